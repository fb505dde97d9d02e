"""The one rule for device names: which devices exist on this machine, checked up front."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "check_device"]


def available_devices() -> list[str]:
    """The device names usable here: ``"cpu"``, then ``"cuda"`` and ``"cuda:<i>"`` per GPU.

    Example:
        >>> available_devices()[0]
        'cpu'
    """
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
        found.extend(f"cuda:{index}" for index in range(torch.cuda.device_count()))
    return found


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device`` if it exists here, else ``ValueError`` listing the
    valid ones. Call it before any work starts.

    ``torch.device`` alone accepts names of devices that are absent (``"cuda"`` without a
    GPU, ``"cuda:7"`` with one GPU) and CPU indices that mean nothing (``"cpu:7"``); those
    then fail deep inside the first allocation, or never.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
        >>> check_device("tpu")
        Traceback (most recent call last):
        ...
        ValueError: device 'tpu' is not a device name; valid devices here: cpu...
    """
    listing = f"valid devices here: {', '.join(available_devices())}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a device name; {listing}") from error
    device = str(parsed)  # the name, in the messages below, also when given a torch.device
    if parsed.type == "cpu" and parsed.index not in (None, 0):
        raise ValueError(f"device {device!r}: there is one CPU device, 'cpu'; {listing}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine; {listing}")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA "
            f"device(s); {listing}"
        )
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only CPU and CUDA devices are supported; {listing}")
    return parsed

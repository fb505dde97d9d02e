"""Joining the ``torch.distributed`` process group that ``torchrun`` describes.

``torchrun --nproc-per-node N`` (or ``--nnodes M --rdzv-endpoint HOST:PORT`` for several
machines) starts the ranks with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT`` set; :func:`init_from_env` joins with NCCL for CUDA devices and gloo
for the CPU, with a timeout on every collective so that a rank that died ends the others
with an error instead of a hang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "Ranks",
    "backend_for",
    "init_from_env",
    "launched_by_torchrun",
]

#: How long a collective may wait for the other ranks before it fails (and the run with it).
DEFAULT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: ``rank`` of ``world``, on ``device``.

    Example:
        >>> ranks = Ranks(rank=0, world=2, device=torch.device("cpu"))
        >>> ranks.is_main, Ranks(1, 2, torch.device("cpu")).is_main
        (True, False)
    """

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether this process is one of several ranks that ``torchrun`` started
    (``WORLD_SIZE`` > 1): a command can then hand its work to the distributed code.

    Example:
        >>> import os
        >>> launched_by_torchrun() == (int(os.environ.get("WORLD_SIZE", "1")) > 1)
        True
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo otherwise.

    Example:
        >>> backend_for(torch.device("cpu")), backend_for(torch.device("cuda", 1))
        ('gloo', 'nccl')
    """
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(
    device: str | torch.device = "cpu", *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> Ranks:
    """Join (or reuse) the process group and return this process's :class:`Ranks`.

    An already initialised group (a test's, an enclosing program's) is used as it is.
    Otherwise ``WORLD_SIZE`` and ``RANK`` must be set (``torchrun`` sets them); a CUDA
    ``device`` without an index becomes ``cuda:LOCAL_RANK``, one GPU per rank.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        missing = [name for name in ("RANK", "WORLD_SIZE") if name not in os.environ]
        if missing:
            raise RuntimeError(
                f"distributed training: expected the environment variables {missing} that "
                "torchrun sets; launch with `torchrun --nproc-per-node N -m "
                "drpo_rl.distributed.train -- ...`"
            )
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend_for(device), timeout=timedelta(seconds=timeout_seconds), device_id=None
        )
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), device=device)

"""The loss boundary: a batch is refused, not trained on, when no loss can use it.

One NaN or infinity in a batch reaches every parameter in one optimiser step (through the
weights, the critic targets or the importance ratios), and a finite reward of 1e30 does
the same through the squared critic losses, whose square overflows float32. So every
loss of the suite, and :meth:`drpo_rl.algorithms.Algorithm.update` for the TorchRL losses
it drives, checks its inputs first: an empty batch, and any float entry it reads outside
``[-MAX_ABS_INPUT, MAX_ABS_INPUT]`` (NaN and infinities included) on a row that counts,
raise a ``ValueError`` naming the entry and how many rows. Nothing is clipped or dropped
quietly: rescale such rewards, or leave those rows out.

The check runs eagerly: inside ``torch.compile`` and under ``torch.func`` transforms
(``vmap``: a stack of runs) it is skipped (data-dependent errors cannot be traced or
batched), so check a batch eagerly before such a step if its source is not trusted (the
stacked runs of :class:`~drpo_rl.algorithms.stacked.StackedAlgorithm` do).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> batch = TensorDict({("next", "reward"): torch.tensor([[0.5], [float("nan")]])}, [2])
    >>> check_batch("DRPOLoss", batch, [("next", "reward")])
    Traceback (most recent call last):
    ...
    ValueError: DRPOLoss: expected finite values within +-1e+15 in ('next', 'reward'),
    got 1 of 2 rows outside (first: row 1, nan); ...
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

__all__ = ["MAX_ABS_INPUT", "check_batch", "valid_rows"]

# Squares (and Adam's squared gradients) of inputs up to 1e15 stay far below float32's
# 3.4e38, summed over any batch that fits in memory.
MAX_ABS_INPUT = 1e15


def valid_rows(
    tensordict: TensorDictBase, mask_keys: Iterable[NestedKey], batch_shape: torch.Size
) -> torch.Tensor | None:
    """The bool ``[prod(batch_shape)]`` mask of the rows that count (the entries at
    ``mask_keys`` that are present, ANDed; ``False`` marks a row left out), or ``None``
    when none is present."""
    valid = None
    for key in mask_keys:
        mask = tensordict.get(key, default=None)
        if mask is None:
            continue
        # Masks carry a trailing singleton like the rewards they accompany.
        while mask.ndim > len(batch_shape) and mask.shape[-1] == 1:
            mask = mask.squeeze(-1)
        mask = mask.bool().expand(batch_shape).reshape(-1)
        valid = mask if valid is None else valid & mask
    return valid


def check_batch(
    owner: str,
    tensordict: TensorDictBase,
    keys: Iterable[NestedKey],
    valid: torch.Tensor | None = None,
    batch_shape: torch.Size | None = None,
) -> None:
    """Refuse an empty batch, or a float entry among ``keys`` with a value outside
    ``[-MAX_ABS_INPUT, MAX_ABS_INPUT]`` on a valid row. Absent, integer and mis-shaped
    entries are left to the loss's own checks.

    Args:
        owner: who refuses (the loss or algorithm), named in the ``ValueError``.
        tensordict: the batch.
        keys: the entries to check (those the loss reads).
        valid: bool, one per row of the flattened batch (``None``: every row counts).
        batch_shape: the batch's shape, when it is not ``tensordict.batch_size`` (a loss
            may be called with a batch-less tensordict of ``[B, 1]`` rewards).
    """
    if torch.compiler.is_compiling() or _transformed(tensordict):
        return
    batch_shape = tensordict.batch_size if batch_shape is None else torch.Size(batch_shape)
    rows = batch_shape.numel()
    if rows == 0:
        raise ValueError(
            f"{owner}: expected a batch of at least one row, got an empty batch "
            f"(batch shape {list(batch_shape)})."
        )
    entries = []
    for key in dict.fromkeys(keys):
        value = tensordict.get(key, default=None)
        # Absent, integer or mis-shaped entries are the loss's own errors to report.
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and value.numel()
            and value.shape[: len(batch_shape)] == batch_shape
        ):
            entries.append((key, value))
    if not entries:
        return
    # One host synchronisation when the batch is clean; the search below only on failure.
    bad = [~(value.abs() <= MAX_ABS_INPUT).reshape(rows, -1).all(-1) for _, value in entries]
    if valid is not None:
        bad = [row_bad & valid for row_bad in bad]
    counts = torch.stack([row_bad.sum() for row_bad in bad]).tolist()
    for (key, value), row_bad, count in zip(entries, bad, counts, strict=True):
        if count:
            row = int(row_bad.nonzero()[0])
            worst = value.reshape(rows, -1)[row]
            first = worst[~(worst.abs() <= MAX_ABS_INPUT)][0].item()
            raise ValueError(
                f"{owner}: expected finite values within +-{MAX_ABS_INPUT:.0e} in {key!r}, "
                f"got {count} of {rows} rows outside (first: row {row}, {first}); a NaN or "
                "infinity would poison every parameter it reaches, and larger finite values "
                "overflow the squared critic losses in float32: rescale them, or leave those "
                "rows out of the batch."
            )


def _transformed(tensordict: TensorDictBase) -> bool:
    """Whether ``tensordict`` holds tensors of a ``torch.func`` transform (e.g. ``vmap``)."""
    for value in tensordict.values(True, True):
        if isinstance(value, torch.Tensor):
            return torch._C._functorch.is_functorch_wrapped_tensor(value)
    return False

"""The few collectives the distributed code needs, on ``torch.distributed``.

Nothing here starts a process group: the caller (``torchrun`` and
:func:`drpo_rl.distributed.process_group.init_from_env`, or a test) does. Every function
works on CPU tensors with gloo and on CUDA tensors with NCCL, and is a no-op when no group
of more than one process is running, so the one-process path never touches
``torch.distributed``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["active_group_size", "gather_rows", "mean_over_ranks"]


def active_group_size(group: dist.ProcessGroup | None = None) -> int:
    """The number of processes of ``group`` (the default group when None); 1 when
    ``torch.distributed`` is not initialised.

    Example:
        >>> active_group_size()  # no process group in a plain Python process
        1
    """
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


def gather_rows(
    columns: list[torch.Tensor], group: dist.ProcessGroup | None = None
) -> tuple[list[torch.Tensor], slice]:
    """All-gather 1-D per-sample columns of equal length ``n`` from every rank.

    Returns the columns concatenated in rank order (each of length ``world * n``, with the
    dtype it had) and the slice of this rank's rows in them. The columns travel as one
    float64 tensor (exact for float32 scores, bools and integer ids below 2**53), so one
    step costs two collectives: the lengths, then the rows. Every rank must pass the same
    number of rows; otherwise every rank raises ``ValueError`` listing the lengths (the
    concatenated batch would not be the one a single process sees).
    """
    n = columns[0].numel()
    device = columns[0].device
    world = dist.get_world_size(group)
    lengths = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(lengths, torch.tensor([n], dtype=torch.int64, device=device), group=group)
    lengths = [int(length) for length in lengths]
    if len(set(lengths)) != 1:
        raise ValueError(
            f"global filter: expected the same batch size on every rank, got {lengths} (rank order)"
        )
    packed = torch.stack([column.reshape(-1).to(torch.float64) for column in columns])
    parts = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(parts, packed, group=group)
    joined = torch.cat(parts, dim=1)
    rank = dist.get_rank(group)
    gathered = [joined[i].to(column.dtype) for i, column in enumerate(columns)]
    return gathered, slice(rank * n, (rank + 1) * n)


def mean_over_ranks(
    values: dict[str, torch.Tensor], group: dist.ProcessGroup | None = None
) -> dict[str, torch.Tensor]:
    """The mean over the ranks of each 0-d tensor of ``values`` (one all-reduce for all).

    Every rank gets the same numbers, summed in the same order by the backend, so a state
    updated from them stays equal on every rank.
    """
    keys = sorted(values)
    stacked = torch.stack([values[key].detach().to(torch.float64) for key in keys])
    dist.all_reduce(stacked, group=group)
    stacked = stacked / dist.get_world_size(group)
    return {key: stacked[i].to(values[key].dtype) for i, key in enumerate(keys)}

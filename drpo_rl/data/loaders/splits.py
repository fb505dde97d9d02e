"""Train / validation / test splits of logged rows by time.

``split=(train, validation, test)`` are fractions of the rows. The two cut-off times are
the times of the rows of rank ``round(train * R)`` and ``round((train + validation) * R)``
in time order: a row earlier than the first cut-off is a training row, one earlier than the
second a validation row, any other a test row; rows at one time fall in one split, so no
moment is both trained on and tested. The cut-offs are found by bisection with counting
passes over the times, a chunk at a time (no sort, no copy: the times may be a
memory-mapped scratch file of any length). Logs store the split per row in the int64 key
``"split"`` (0, 1, 2: :data:`SPLITS`).
"""

from __future__ import annotations

import math

import numpy as np

from envs.common.checks import check_number

__all__ = ["SPLITS", "assign_splits", "check_split", "describe_splits", "time_cutoffs"]

#: The values of the ``"split"`` key.
SPLITS = ("train", "validation", "test")


def check_split(split) -> tuple[float, float, float]:
    """``split`` as three fractions summing to 1, the training one > 0."""
    if not (isinstance(split, (tuple, list)) and len(split) == 3):
        raise ValueError(f"split: expected (train, validation, test) fractions, got {split!r}")
    fractions = tuple(check_number(f"split[{i}]", v, minimum=0) for i, v in enumerate(split))
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-9) or fractions[0] == 0:
        raise ValueError(f"split: expected fractions summing to 1, train > 0, got {split!r}")
    return fractions


def time_cutoffs(times: np.ndarray, fractions, *, chunk_size: int = 1 << 20) -> list[float]:
    """The two cut-off times of ``fractions`` (see the module docstring).

    Examples:
        >>> time_cutoffs(np.array([5.0, 1.0, 3.0, 3.0, 9.0]), (0.4, 0.2, 0.4))
        [3.0, 5.0]
        >>> assign_splits(np.array([5.0, 1.0, 3.0, 3.0, 9.0]), [3.0, 5.0]).tolist()
        [2, 0, 1, 1, 2]
    """
    rows = len(times)
    ranks = [round(fractions[0] * rows), round((fractions[0] + fractions[1]) * rows)]
    return [_time_at_rank(times, rank, chunk_size) for rank in ranks]


def assign_splits(times: np.ndarray, cutoffs: list[float]) -> np.ndarray:
    """The split (0, 1, 2) of each of ``times``."""
    return np.searchsorted(np.asarray(cutoffs), times, side="right").astype(np.int64)


def describe_splits(fractions, cutoffs: list[float], counts) -> dict:
    """What the metadata records of a split (JSON-ready)."""
    return {
        "names": list(SPLITS),
        "fractions": list(fractions),
        "time_cutoffs": [c if math.isfinite(c) else None for c in cutoffs],
        "rows": [int(n) for n in counts],
    }


def _time_at_rank(times: np.ndarray, rank: int, chunk_size: int) -> float:
    """The time of the row of rank ``rank`` (0-based) in time order; ``inf`` past the end."""
    if rank >= len(times):
        return math.inf
    blocks = range(0, len(times), chunk_size)

    def at_most(value: float) -> int:
        return sum(int(np.count_nonzero(times[s : s + chunk_size] <= value)) for s in blocks)

    low = min(float(times[s : s + chunk_size].min()) for s in blocks)
    high = max(float(times[s : s + chunk_size].max()) for s in blocks)
    if at_most(low) > rank:
        return low
    # Invariant: at_most(low) <= rank < at_most(high); ends when no float lies between.
    while True:
        middle = low + (high - low) / 2
        if middle in (low, high):
            return high
        if at_most(middle) > rank:
            high = middle
        else:
            low = middle

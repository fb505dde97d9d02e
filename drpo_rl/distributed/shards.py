"""How work is cut for several processes: contiguous ranges, and one seed per shard.

One place for the rule, shared by the learner (its part of the logs), the sharded log
generation and the sharded evaluation, so that the same shard means the same rows and the
same random streams everywhere.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shard_range", "shard_rows", "shard_seed"]


def shard_range(size: int, index: int, count: int) -> range:
    """The contiguous part ``index`` of ``count`` of ``range(size)``; sizes differ by <= 1.

    Example:
        >>> [list(shard_range(5, r, 2)) for r in range(2)]
        [[0, 1], [2, 3, 4]]
    """
    return range(index * size // count, (index + 1) * size // count)


def shard_rows(size: int, count: int) -> list[range]:
    """All ``count`` parts of ``range(size)``, in order.

    Example:
        >>> shard_rows(10, 3)
        [range(0, 3), range(3, 6), range(6, 10)]
    """
    return [shard_range(size, index, count) for index in range(count)]


def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``: numpy's ``SeedSequence((seed, shard))``, 62 bits.

    It depends on the seed and the shard only, not on the number of shards or processes.

    Example:
        >>> shard_seed(0, 0) == shard_seed(0, 0) != shard_seed(0, 1)
        True
    """
    state = np.random.SeedSequence((seed, shard)).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(2))

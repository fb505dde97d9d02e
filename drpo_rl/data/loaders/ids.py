"""Raw ids (any hashable value a log holds: strings, integers) to dense ids 0, 1, 2, ...

Dense ids are given in order of first appearance and two raw values share one only when
they are equal (so ``"007"`` and ``"7"``, or ``"1"`` and ``1``, stay apart: nothing is
normalised). The mapping is kept, index -> raw id, for exporting recommendations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["IdMap"]


class IdMap:
    """A growing raw -> dense id mapping.

    Examples:
        >>> ids = IdMap()
        >>> ids.encode(np.array(["b", "a", "b"], dtype=object)).tolist()
        [0, 1, 0]
        >>> ids.encode(np.array(["7", 7, "a"], dtype=object)).tolist(), ids.raw
        ([2, 3, 1], ['b', 'a', '7', 7])
        >>> ids.lookup(np.array(["a", "zz"], dtype=object)).tolist()  # -1: unknown
        [1, -1]
    """

    def __init__(self) -> None:
        self._dense: dict[object, int] = {}
        self.raw: list[object] = []

    def __len__(self) -> int:
        return len(self.raw)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Dense ids of ``values``, adding the ones not seen before."""
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        dense = np.empty(len(uniques), dtype=np.int64)
        for position, raw in enumerate(uniques):
            raw = _plain(raw)
            key = (type(raw).__name__, raw)
            found = self._dense.get(key)
            if found is None:
                found = self._dense[key] = len(self.raw)
                self.raw.append(raw)
            dense[position] = found
        return dense[codes]

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Dense ids of ``values``, -1 for a value never encoded."""
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        dense = [self._dense.get((type(_plain(raw)).__name__, _plain(raw)), -1) for raw in uniques]
        return np.asarray(dense, dtype=np.int64)[codes]


def _plain(value: object) -> object:
    # numpy scalars (np.int64 from a Parquet column) as the Python values JSON can hold.
    return value.item() if isinstance(value, np.generic) else value

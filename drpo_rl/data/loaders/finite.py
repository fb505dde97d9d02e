"""Numbers of a checked file column, narrowed to float32 without becoming infinite.

:func:`envs.common.tables.read_table` accepts only finite numbers, but a finite float64 beyond
float32's range (about 3.4e38) would become an infinity in the stored logs; the loaders
narrow their float columns here, so such a value is an error naming its line.
"""

from __future__ import annotations

import os

import numpy as np

from envs.common.tables import TableError

__all__ = ["as_float32"]


def as_float32(
    values: np.ndarray, *, path: str | os.PathLike, column: str, first_line: int
) -> np.ndarray:
    """``values`` (one per row of the file, in file order) as float32, all finite.

    Raises:
        envs.common.tables.TableError: at the first value that is not finite as float32, naming
            ``path``, its line (``first_line`` + row) and ``column``.

    Examples:
        >>> as_float32(np.array([0.5, 2.0]), path="f.csv", column="x", first_line=2).dtype
        dtype('float32')
        >>> as_float32(np.array([0.5, 1e39]), path="f.csv", column="x", first_line=2)
        Traceback (most recent call last):
        ...
        envs.common.tables.TableError: f.csv, line 3, column 'x': expected a number ... got 1e+39
    """
    values = np.asarray(values)
    with np.errstate(over="ignore"):  # the overflow is reported below, with its line
        narrowed = values.astype(np.float32)
    bad = ~np.isfinite(narrowed)
    if bad.any():
        row = int(np.argmax(bad))
        limit = float(np.finfo(np.float32).max)
        raise TableError(
            path,
            f"expected a number within float32's range (|x| <= {limit:.2g}), got "
            f"{float(values[row])!r}",
            line=first_line + row,
            column=column,
        )
    return narrowed

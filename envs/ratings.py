"""Reading ratings logs (user, item, rating, timestamp) in the common formats, strictly.

:func:`read_ratings` reads a ratings file into :class:`Ratings`, used by the data-fitted
environments (:mod:`envs.fitted`) and the MovieLens loader. Files are read with
:func:`envs.common.tables.read_table`: a file that does not meet its format raises
:class:`~envs.common.tables.TableError` naming the file, line and column (re-exported
here, with ``read_table``, for code that imports them from this module).

Ratings formats (``format=``; guessed from the file name when not given):

==============  =======================  =====================================================
format          file                     layout
==============  =======================  =====================================================
``"ml-100k"``   MovieLens ``u.data``     tab-separated ``user item rating timestamp``, no
                                         header
``"ml-1m"``     MovieLens ``ratings.dat`` ``user::item::rating::timestamp``, no header
``"recbole"``   RecBole ``*.inter``      tab-separated, header of ``name:type`` fields;
                                         ``user_id``, ``item_id``, ``rating`` required,
                                         ``timestamp`` optional
``"csv"``       ``*.csv``                comma-separated, header; ``user_id``, ``item_id``,
                                         ``rating`` required, ``timestamp`` optional
==============  =======================  =====================================================

Where a file has no timestamp, the order of its lines is taken as the order in time (the
``timestamp`` of a row is then its 0-based row number), and ``Ratings.has_timestamp`` is
``False``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.common.checks import check_choice, fail, is_real
from envs.common.files import file_sha256
from envs.common.tables import COLUMN_KINDS, TableError, read_table

__all__ = [
    "COLUMN_KINDS",
    "RATINGS_FORMATS",
    "Ratings",
    "TableError",
    "detect_ratings_format",
    "file_sha256",
    "read_ratings",
    "read_table",
]

#: The formats :func:`read_ratings` knows.
RATINGS_FORMATS = ("ml-100k", "ml-1m", "recbole", "csv")


@dataclass(frozen=True)
class Ratings:
    """A ratings log read from one file, in file order, every value checked.

    Attributes:
        path: the file read.
        format: one of :data:`RATINGS_FORMATS`.
        user: int64 [R], the user id as written in the file.
        item: int64 [R], the item id as written in the file.
        rating: float64 [R], within ``rating_scale``.
        timestamp: int64 [R], as written in the file (MovieLens: seconds since the epoch),
            or the row number where the file has none (``has_timestamp`` False).
        rating_scale: ``(lowest, highest)`` possible rating.
        first_line: the file line of row 0 (errors about row ``i`` name line
            ``first_line + i``).

    The derived views re-index ids to contiguous 0-based indices in increasing id order
    (``user_ids[user_index] == user``), and map ratings linearly onto [0, 1]:
    ``(rating - lowest) / (highest - lowest)``, so MovieLens stars 1..5 become
    0, 0.25, 0.5, 0.75, 1.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "u.data"
        >>> _ = f.write_text("7\\t30\\t5\\t881250949\\n2\\t30\\t1\\t881250950\\n"
        ...                  "7\\t12\\t3\\t881250951\\n")
        >>> r = read_ratings(f)
        >>> r.format, len(r), r.num_users, r.num_items
        ('ml-100k', 3, 2, 2)
        >>> r.user_index.tolist(), r.item_index.tolist(), r.rating01.tolist()
        ([1, 0, 1], [1, 1, 0], [1.0, 0.0, 0.5])
        >>> r.user_ids.tolist(), r.item_ids.tolist()
        ([2, 7], [12, 30])
    """

    path: str
    format: str
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    rating_scale: tuple[float, float]
    has_timestamp: bool
    first_line: int

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def user_ids(self) -> np.ndarray:
        """int64 [U]: the distinct user ids of the file, increasing (index -> id)."""
        return np.unique(self.user)

    @property
    def item_ids(self) -> np.ndarray:
        """int64 [N]: the distinct item ids of the file, increasing (index -> id)."""
        return np.unique(self.item)

    @property
    def user_index(self) -> np.ndarray:
        """int64 [R]: each row's user as an index into ``user_ids``."""
        return np.searchsorted(self.user_ids, self.user)

    @property
    def item_index(self) -> np.ndarray:
        """int64 [R]: each row's item as an index into ``item_ids``."""
        return np.searchsorted(self.item_ids, self.item)

    @property
    def num_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def rating01(self) -> np.ndarray:
        """float64 [R]: ratings mapped linearly from ``rating_scale`` onto [0, 1]."""
        low, high = self.rating_scale
        return (self.rating - low) / (high - low)


_FORMAT_LAYOUT = {
    # format: (separator, header, columns in file order, optional columns)
    "ml-100k": ("\t", False, ("user", "item", "rating", "timestamp"), ()),
    "ml-1m": ("::", False, ("user", "item", "rating", "timestamp"), ()),
    "recbole": ("\t", True, ("user_id", "item_id", "rating", "timestamp"), ("timestamp",)),
    "csv": (",", True, ("user_id", "item_id", "rating", "timestamp"), ("timestamp",)),
}
_KINDS = ("id", "id", "number", "int")


def detect_ratings_format(path: str | os.PathLike) -> str:
    """The ratings format of a file, from its name.

    Examples:
        >>> detect_ratings_format("ml-100k/u.data"), detect_ratings_format("ml-1m/ratings.dat")
        ('ml-100k', 'ml-1m')
        >>> detect_ratings_format("ml-100k.inter"), detect_ratings_format("r.csv")
        ('recbole', 'csv')
    """
    name = Path(path).name
    if name.endswith(".data"):
        return "ml-100k"
    if name.endswith(".dat"):
        return "ml-1m"
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith(".csv"):
        return "csv"
    raise ValueError(
        f"{path}: cannot tell the ratings format from the file name; pass format= one of "
        f"{RATINGS_FORMATS} (u.data -> ml-100k, *.dat -> ml-1m, *.inter -> recbole, "
        "*.csv -> csv)"
    )


def read_ratings(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
) -> Ratings:
    """Read a ratings file (see the module docstring for the formats).

    Args:
        path: the file.
        format: one of :data:`RATINGS_FORMATS`; guessed from the file name when ``None``.
        rating_scale: ``(lowest, highest)`` possible rating (MovieLens: 1 to 5 stars). A
            rating outside it is an error, not clipped.

    Raises:
        TableError: as :func:`read_table`, and for a rating outside ``rating_scale``.
        ValueError: an unknown format or an empty rating scale.
    """
    format = detect_ratings_format(path) if format is None else format
    check_choice("format", format, RATINGS_FORMATS)
    scale = tuple(rating_scale) if isinstance(rating_scale, (tuple, list)) else ()
    if not (len(scale) == 2 and all(is_real(v) and math.isfinite(v) for v in scale)):
        fail("rating_scale", "(lowest, highest), two finite numbers", rating_scale)
    low, high = (float(v) for v in scale)
    if not high > low:
        fail("rating_scale", "(lowest, highest) with lowest < highest", rating_scale)
    sep, header, names, optional = _FORMAT_LAYOUT[format]
    frame = read_table(
        path,
        dict(zip(names, _KINDS, strict=True)),
        sep=sep,
        header=header,
        optional=optional,
        allow_extra_columns=False,
    )
    user, item, rating, time = names
    values = frame[rating].to_numpy(dtype=np.float64)
    outside = (values < low) | (values > high)
    if outside.any():
        row = int(np.argmax(outside))
        raise TableError(
            path,
            f"rating {values[row]:g} outside the rating scale [{low:g}, {high:g}] "
            "(pass rating_scale= for another scale)",
            line=frame.attrs["first_line"] + row,
            column=rating,
        )
    has_time = time in frame.columns
    return Ratings(
        path=str(path),
        format=format,
        user=frame[user].to_numpy(dtype=np.int64),
        item=frame[item].to_numpy(dtype=np.int64),
        rating=values,
        timestamp=(frame[time].to_numpy(dtype=np.int64) if has_time else np.arange(len(frame))),
        rating_scale=(low, high),
        has_timestamp=has_time,
        first_line=frame.attrs["first_line"],
    )

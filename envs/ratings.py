"""Reading interaction logs (ratings, clicks) from delimited text files, strictly.

Every value that the rest of the suite relies on is checked as it is read. A file that does
not meet its format raises :class:`TableError`, whose message names the file, the 1-based
line of the file (the header counts as line 1 where there is one) and the column, and says
what was expected and what was found. No row is dropped and no value is altered here.

Two layers:

- :func:`read_table` reads any delimited file into a ``pandas.DataFrame`` whose columns have
  been checked against declared kinds (see :data:`COLUMN_KINDS`). The real-log loaders of
  ``drpo_rl.data.loaders`` (KuaiRand, KuaiRec, Open Bandit Dataset) build on it.
- :func:`read_ratings` reads the common ratings formats into :class:`Ratings` (user, item,
  rating, timestamp), used by the data-fitted environments (:mod:`envs.fitted`) and the
  MovieLens loader.

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

import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a file is read: `import envs` stays light
    import pandas as pd

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

#: What each column kind accepts (the values of ``read_table``'s ``columns`` mapping).
COLUMN_KINDS = {
    "id": "a non-negative integer id",
    "int": "an integer",
    "number": "a finite number",
    "binary": "0 or 1",
    "text": "a non-empty value",
    "datetime": "a date and time",
}

#: The formats :func:`read_ratings` knows.
RATINGS_FORMATS = ("ml-100k", "ml-1m", "recbole", "csv")


class TableError(ValueError):
    """A data file that does not meet its format.

    The message reads ``"<file>, line <n>, column '<name>': <what was expected and found>"``
    (line and column left out where they do not apply). The parts are kept as attributes.

    Examples:
        >>> err = TableError("u.data", "expected a non-negative integer id, got '-3'",
        ...                  line=7, column="user")
        >>> str(err)
        "u.data, line 7, column 'user': expected a non-negative integer id, got '-3'"
        >>> err.line, err.column
        (7, 'user')
    """

    def __init__(
        self, path: str | os.PathLike, problem: str, *, line: int | None = None, column=None
    ):
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex): what identifies a data file in caches and logs."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pandas():
    try:
        import pandas
    except ImportError as err:  # pragma: no cover - pandas is in the `data` extra
        raise ImportError("reading data files needs pandas: pip install 'drpo-rl[data]'") from err
    return pandas


def read_table(
    path: str | os.PathLike,
    columns: Mapping[str, str],
    *,
    sep: str = ",",
    header: bool = True,
    optional: Sequence[str] = (),
    extra_columns: Mapping[str, str] | None = None,
    allow_extra_columns: bool = True,
    missing_ok: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited text file and check every value of the columns asked for.

    Args:
        path: the file.
        columns: column name -> kind (a key of :data:`COLUMN_KINDS`), in file order for a
            file without header (``header=False``), where the names are given to its fields.
        sep: field separator (``"::"`` is accepted and read with the fast parser).
        header: whether line 1 names the columns. RecBole-style ``name:type`` headers are
            read by name (the ``:type`` suffix is ignored).
        optional: names in ``columns`` that may be absent from the header (checked when
            present).
        extra_columns: name prefix -> kind: also read every column whose name starts with
            the prefix, with that kind (e.g. the ``user-item_affinity_`` columns of the
            Open Bandit Dataset), in file order. Only for files with a header.
        allow_extra_columns: for a file without header, whether lines may carry more fields
            than ``columns`` names (ignored). With a header, columns not asked for are
            ignored, but every line must have as many fields as the header.
        missing_ok: columns of kind "number" whose values may be missing (empty or NaN);
            they read as NaN, for the caller to deal with openly (other kinds never may).

    Returns:
        A DataFrame with the columns asked for that are present (ids and ints as int64,
        numbers as float64, binaries as int64, texts as str, datetimes as ``datetime64``),
        indexed 0..rows-1 in file order. Its ``attrs["first_line"]`` is the file line of
        row 0 (so row ``i`` came from line ``first_line + i``).

    Raises:
        TableError: empty file, no data rows, a required column missing from the header, a
            line with the wrong number of fields, or a value that is missing (empty, NaN) or
            not of its column's kind.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "clicks.csv"
        >>> _ = f.write_text("user_id,item_id,click\\n3,10,1\\n4,11,0\\n")
        >>> read_table(f, {"user_id": "id", "item_id": "id", "click": "binary"}).to_numpy()
        array([[ 3, 10,  1],
               [ 4, 11,  0]])
        >>> _ = f.write_text("user_id,item_id,click\\n3,10,1\\n4,-11,0\\n")
        >>> try:
        ...     read_table(f, {"user_id": "id", "item_id": "id", "click": "binary"})
        ... except TableError as err:
        ...     print(err.line, err.column, err.problem)
        3 item_id expected a non-negative integer id, got '-11'
    """
    pd = _pandas()
    path = Path(path)
    for name, kind in columns.items():
        if kind not in COLUMN_KINDS:
            raise ValueError(
                f"column {name!r}: unknown kind {kind!r}; valid kinds: {sorted(COLUMN_KINDS)}"
            )
    extra_columns = dict(extra_columns or {})
    for prefix, kind in extra_columns.items():
        if kind not in COLUMN_KINDS:
            raise ValueError(
                f"extra_columns[{prefix!r}]: unknown kind {kind!r}; valid: {sorted(COLUMN_KINDS)}"
            )
    if extra_columns and not header:
        raise ValueError("extra_columns needs a file with a header (columns found by name)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    source = _source(path, sep)
    if sep == "::":
        sep = "\t"
    expected = ", ".join(c + (" (optional)" if c in optional else "") for c in columns)
    try:
        # Every field as text, header included, and no column selection: pandas then
        # checks that each line has as many fields as line 1 (with `usecols` or a parsed
        # header it silently drops or shifts surplus fields).
        table = pd.read_csv(source, sep=sep, header=None, dtype=str, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise TableError(path, f"empty file; expected columns {expected}", line=1) from None
    except pd.errors.ParserError as err:
        raise _parser_error(path, err, expected) from None
    if header:
        found = ["" if pd.isna(raw) else _header_name(raw) for raw in table.iloc[0]]
        missing = [c for c in columns if c not in found and c not in optional]
        if missing:
            raise TableError(
                path,
                f"missing column(s) {', '.join(map(repr, missing))} in the header; "
                f"found: {', '.join(map(repr, found))}",
                line=1,
                column=missing[0],
            )
        kinds = {c: k for c, k in columns.items() if c in found}
        for name in found:
            for prefix, kind in extra_columns.items():
                if name not in kinds and name.startswith(prefix):
                    kinds[name] = kind
        twice = sorted({name for name in kinds if found.count(name) > 1})
        if twice:
            raise TableError(path, f"column {twice[0]!r} appears twice in the header", line=1)
        frame = table.iloc[1:, [found.index(name) for name in kinds]]
        frame.columns = list(kinds)
        first_line = 2
    else:
        kinds = dict(columns)
        frame = _fit_fields(table, list(kinds), path, allow_extra_columns)
        first_line = 1
    if len(frame) == 0:
        raise TableError(
            path, f"no data rows after the header; expected columns {expected}", line=2
        )
    frame = frame.reset_index(drop=True)
    for name in missing_ok:
        if columns.get(name) != "number":
            raise ValueError(f"missing_ok: {name!r} is not a column of kind 'number'")
    for name, kind in kinds.items():
        frame[name] = _check_column(
            frame[name], kind, path, name, first_line, missing_ok=name in missing_ok
        )
    frame.attrs["first_line"] = first_line
    frame.attrs["path"] = str(path)
    return frame


def _source(path: Path, sep: str) -> io.BytesIO:
    data = path.read_bytes()
    if sep == "::":
        # pandas reads multi-character separators only with its slow Python engine; a tab
        # never occurs in these files, so the swap keeps the C parser and every field.
        if b"\t" in data:
            line = data[: data.index(b"\t")].count(b"\n") + 1
            raise TableError(path, "unexpected tab character in a '::'-separated file", line=line)
        data = data.replace(b"::", b"\t")
    return io.BytesIO(data)


def _header_name(raw: str) -> str:
    # RecBole headers read "user_id:token"; the type suffix is RecBole's, not a name.
    return raw.split(":", 1)[0].strip()


def _fit_fields(frame, names: list[str], path: Path, allow_extra: bool):
    if frame.shape[1] < len(names):
        raise TableError(
            path,
            f"expected {len(names)} fields ({', '.join(names)}), found {frame.shape[1]}",
            line=1,
            column=names[frame.shape[1]],
        )
    if frame.shape[1] > len(names):
        extra = frame.iloc[:, len(names) :].notna().any(axis=1).to_numpy()
        if extra.any() and not allow_extra:
            row = int(np.argmax(extra))
            raise TableError(
                path,
                f"expected {len(names)} fields ({', '.join(names)}), found more",
                line=row + 1,
            )
        frame = frame.iloc[:, : len(names)]
    frame.columns = names
    return frame


_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _parser_error(path: Path, err: Exception, expected: str) -> TableError:
    match = _PANDAS_LINE.search(str(err))
    if match:
        want, line, saw = (int(g) for g in match.groups())
        return TableError(
            path, f"expected {want} fields ({expected}), found {saw}", line=line, column=None
        )
    return TableError(path, f"cannot be parsed as a table of {expected}: {err}")


def _check_column(
    values, kind: str, path: Path, name: str, first_line: int, *, missing_ok: bool = False
):
    pd = _pandas()
    raw = values
    # pandas reads empty fields and NaN/NA spellings as NaN; a blank text also counts as
    # missing (blank numbers fail to parse below, with the blank shown).
    missing = raw.isna().to_numpy()
    if kind == "text":
        missing = missing | (raw.str.strip() == "").to_numpy(dtype=bool, na_value=True)
    if missing.any() and not missing_ok:
        row = int(np.argmax(missing))
        raise TableError(
            path,
            f"missing value (empty or NaN); expected {COLUMN_KINDS[kind]}",
            line=first_line + row,
            column=name,
        )
    if kind == "text":
        return raw.astype(str)
    if kind == "datetime":
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
        _first_bad(parsed.isna().to_numpy(), raw, kind, path, name, first_line)
        return parsed
    numbers = pd.to_numeric(raw, errors="coerce")  # surrounding spaces are accepted
    as_float = numbers.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(as_float)
    if kind == "number":
        _first_bad(bad & ~missing, raw, kind, path, name, first_line)
        numbers[missing] = np.nan
        return numbers.astype(np.float64)
    bad |= as_float != np.round(as_float)
    if kind == "id":
        bad |= as_float < 0
    elif kind == "binary":
        bad |= (as_float != 0) & (as_float != 1)
    _first_bad(bad, raw, kind, path, name, first_line)
    if numbers.dtype.kind in "iu":
        return numbers.astype(np.int64)
    return pd.Series(as_float.astype(np.int64), index=numbers.index)


def _first_bad(bad: np.ndarray, raw, kind: str, path: Path, name: str, first_line: int):
    if bad.any():
        row = int(np.argmax(bad))
        raise TableError(
            path,
            f"expected {COLUMN_KINDS[kind]}, got {raw.iloc[row]!r}",
            line=first_line + row,
            column=name,
        )


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
    if format not in _FORMAT_LAYOUT:
        raise ValueError(f"unknown ratings format {format!r}; valid: {RATINGS_FORMATS}")
    low, high = (float(v) for v in rating_scale)
    if not high > low:
        raise ValueError(
            f"rating_scale must be (lowest, highest) with lowest < highest, got {rating_scale}"
        )
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

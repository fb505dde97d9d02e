"""Reading delimited text files (CSV, TSV, ``::``-separated) strictly, with one error type.

Every value that the rest of the suite relies on is checked as it is read. A file that does
not meet its format raises :class:`TableError`, whose message names the file, the 1-based
line of the file (the header counts as line 1 where there is one) and the column, and says
what was expected and what was found. No row is dropped and no value is altered here.

:func:`read_table` reads any delimited file into a ``pandas.DataFrame`` whose columns have
been checked against declared kinds (see :data:`COLUMN_KINDS`). The ratings formats of
:mod:`envs.ratings` and the real-log loaders of ``drpo_rl.data.loaders`` (KuaiRand, KuaiRec,
Open Bandit Dataset) build on it; whoever else refuses a data value (a dataset holding NaN)
raises the same :class:`TableError`.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a file is read
    import pandas as pd

__all__ = ["COLUMN_KINDS", "TableError", "read_table"]

#: What each column kind accepts (the values of ``read_table``'s ``columns`` mapping).
COLUMN_KINDS = {
    "id": "a non-negative integer id",
    "int": "an integer",
    "number": "a finite number",
    "binary": "0 or 1",
    "text": "a non-empty value",
    "datetime": "a date and time",
}


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

    def __reduce__(self):
        # Raised in a worker process, it travels back pickled: rebuild it from its parts.
        return _rebuild_table_error, (self.path, self.problem, self.line, self.column)


def _rebuild_table_error(path, problem, line, column) -> TableError:
    return TableError(path, problem, line=line, column=column)


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
    import pandas as pd  # here, not at the top: `import envs` stays light

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
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TableError(
            path,
            f"not UTF-8 text: byte {data[err.start : err.start + 1]!r} at byte offset "
            f"{err.start} ({err.reason}); save the file as UTF-8",
            line=line,
        ) from None
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


# float64 holds every integer exactly up to 2**53 only.
_FLOAT_EXACT_LIMIT = float(2**53)


def _check_column(
    values, kind: str, path: Path, name: str, first_line: int, *, missing_ok: bool = False
):
    import pandas as pd

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
    # Integers must survive as int64 exactly: pandas reads 2**63 and above as uint64 (or,
    # past 2**64, as float64), which astype(int64) would wrap to negative numbers, and
    # float64 holds integers exactly only up to 2**53; either way distinct ids would merge.
    if numbers.dtype.kind == "u":
        too_large = (numbers > np.iinfo(np.int64).max).to_numpy()
    elif numbers.dtype.kind == "f":
        too_large = np.abs(as_float) >= _FLOAT_EXACT_LIMIT
    else:
        too_large = np.zeros(len(numbers), dtype=bool)
    if too_large.any():
        row = int(np.argmax(too_large))
        raise TableError(
            path,
            f"expected {COLUMN_KINDS[kind]} that fits a signed 64-bit integer exactly "
            f"(below 2**63, or below 2**53 when the column holds non-integer spellings), got "
            f"{raw.iloc[row]!r}; distinct values would otherwise merge",
            line=first_line + row,
            column=name,
        )
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

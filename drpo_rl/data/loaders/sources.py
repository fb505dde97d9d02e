"""Where interaction rows come from: a CSV, Parquet or JSON-lines file, or a DataFrame, read
in chunks.

:func:`read_chunks` yields ``(frame, first_row)`` pairs: a pandas DataFrame of at most about
``chunk_size`` rows holding the requested columns, and the 1-based number of its first data
row in the source (so that an error can name the row, and for text files the line). Only
one chunk is in memory at a time:

- CSV: pyarrow's streaming reader (:func:`pyarrow.csv.open_csv`), every column read as text
  (the caller checks and converts each value, so that a bad value is reported with its row
  instead of failing a whole block); its blocks are sized from the file's mean line length
  so that a block holds about ``chunk_size`` rows.
- Parquet: :meth:`pyarrow.parquet.ParquetFile.iter_batches` (typed columns, as stored).
- JSON lines (``.jsonl``, ``.ndjson``, ``.json`` with one object per line): pandas'
  ``read_json(lines=True, chunksize=...)``, values as written (no type guessing).
- a pandas DataFrame: sliced, no copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from envs.common.checks import check_int
from envs.common.tables import TableError

__all__ = ["FORMATS", "describe_source", "read_chunks", "source_format"]

#: File formats by suffix.
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

# Bytes read to estimate a CSV file's mean line length.
_SAMPLE_BYTES = 1 << 20


def source_format(source: str | os.PathLike | pd.DataFrame) -> str:
    """``"csv"``, ``"parquet"``, ``"jsonl"`` or ``"dataframe"``.

    Examples:
        >>> source_format("logs/2026-11.parquet"), source_format(pd.DataFrame())
        ('parquet', 'dataframe')
        >>> source_format("logs.xlsx")
        Traceback (most recent call last):
        ...
        ValueError: source: expected a pandas DataFrame or a file ending in .csv, .tsv, \
.parquet, .pq, .jsonl, .ndjson, .json, got 'logs.xlsx'
    """
    if isinstance(source, pd.DataFrame):
        return "dataframe"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: expected a file path or a pandas DataFrame, got {source!r}")
    suffix = Path(source).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            "source: expected a pandas DataFrame or a file ending in "
            f"{', '.join(FORMATS)}, got {os.fspath(source)!r}"
        )
    return FORMATS[suffix]


def describe_source(source: str | os.PathLike | pd.DataFrame) -> str:
    """How errors name ``source``: its path, or ``"DataFrame"``."""
    return "DataFrame" if isinstance(source, pd.DataFrame) else os.fspath(source)


def read_chunks(
    source: str | os.PathLike | pd.DataFrame, names: Sequence[str], *, chunk_size: int
) -> Iterator[tuple[pd.DataFrame, int]]:
    """The columns ``names`` of ``source``, in chunks of about ``chunk_size`` rows.

    Raises:
        envs.common.tables.TableError: a column of ``names`` is missing (naming the columns
            found), or the file cannot be parsed as its format.
        FileNotFoundError: no such file.

    Examples:
        >>> frame = pd.DataFrame({"user": ["a", "b", "c"], "item": [1, 2, 3], "x": 0})
        >>> [(list(chunk["user"]), first) for chunk, first in
        ...  read_chunks(frame, ["user", "item"], chunk_size=2)]
        [(['a', 'b'], 1), (['c'], 3)]
    """
    check_int("chunk_size", chunk_size)
    kind = source_format(source)
    name = describe_source(source)
    if kind != "dataframe" and not Path(source).is_file():
        raise FileNotFoundError(f"{name}: no such file")
    chunks = {
        "dataframe": _frame_chunks,
        "csv": _csv_chunks,
        "parquet": _parquet_chunks,
        "jsonl": _jsonl_chunks,
    }[kind](source, list(names), chunk_size)
    first = 1
    for chunk in chunks:
        missing = [c for c in names if c not in chunk.columns]
        if missing:
            raise TableError(
                name,
                f"expected columns {list(names)}, missing {missing} (found "
                f"{[str(c) for c in chunk.columns]})",
            )
        if len(chunk):
            yield chunk[list(names)], first
            first += len(chunk)


def _frame_chunks(frame: pd.DataFrame, names: list[str], chunk_size: int):
    if not len(frame):
        yield frame
    for start in range(0, len(frame), chunk_size):
        yield frame.iloc[start : start + chunk_size]


def _csv_chunks(path, names: list[str], chunk_size: int):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    with open(path, "rb") as file:
        sample = file.read(_SAMPLE_BYTES)
    header = sample.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    found = [c.strip('"') for c in header.split(delimiter)]
    wanted = [c for c in names if c in found]
    if len(wanted) < len(names):
        yield pd.DataFrame(columns=found)  # read_chunks names the missing columns
        return
    line_bytes = max(1, len(sample) // max(1, sample.count(b"\n")))
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=max(1 << 16, line_bytes * chunk_size)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            yield batch.to_pandas()
    except pa.ArrowInvalid as error:
        raise TableError(path, f"not a readable CSV file: {error}") from error


def _parquet_chunks(path, names: list[str], chunk_size: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except pa.ArrowInvalid as error:
        raise TableError(path, f"not a readable Parquet file: {error}") from error
    found = file.schema_arrow.names
    if any(c not in found for c in names):
        yield pd.DataFrame(columns=found)
        return
    for batch in file.iter_batches(batch_size=chunk_size, columns=names):
        yield batch.to_pandas()


def _jsonl_chunks(path, names: list[str], chunk_size: int):
    try:
        with pd.read_json(path, lines=True, chunksize=chunk_size, dtype=False) as reader:
            yield from reader
    except ValueError as error:
        raise TableError(path, f"not a readable JSON-lines file: {error}") from error

"""User or item feature tables of an interaction log: one row per id, numeric columns.

A table (CSV, Parquet, JSON lines or a DataFrame, read with
:mod:`~drpo_rl.data.loaders.sources`) has the id column of the log (the same name and the
same raw values) and any number of numeric feature columns, every value finite. Its rows
are put in the log's dense-id order; an id of the log without a row is an error, rows of
ids the log never mentions are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from drpo_rl.data.loaders.ids import IdMap
from drpo_rl.data.loaders.sources import describe_source, read_chunks, source_format
from envs.common.tables import TableError

__all__ = ["FeatureTable", "read_feature_table"]

# Feature tables are small next to the log: read in one piece.
_TABLE_CHUNK = 1 << 20


@dataclass(frozen=True)
class FeatureTable:
    """Features in dense-id order.

    Attributes:
        source: the table read; names: its feature columns, in order.
        values: float32 [num_ids, F], row i for dense id i.
        rows_unused: rows of ids that the log does not have.

    Example:
        >>> table = FeatureTable("items.csv", ["price"], np.zeros((2, 1), np.float32), 1)
        >>> table.describe()  # what the dataset's metadata records of it
        {'source': 'items.csv', 'columns': ['price'], 'rows_unused': 1}
    """

    source: str
    names: list[str]
    values: np.ndarray
    rows_unused: int

    def describe(self) -> dict:
        return {"source": self.source, "columns": self.names, "rows_unused": self.rows_unused}


def read_feature_table(table, id_column: str, ids: IdMap, *, option: str) -> FeatureTable:
    """The features of every id of ``ids``, from ``table`` (see the module docstring).

    Raises:
        envs.common.tables.TableError: the id column is missing, a feature value is not a
            finite number, or an id has two rows (naming the row and column).
        ValueError: an id of ``ids`` has no row (``option`` names the argument).

    Examples:
        >>> ids = IdMap()
        >>> _ = ids.encode(np.array(["b", "a"], dtype=object))
        >>> table = pd.DataFrame({"item": ["a", "b", "c"], "price": [1.0, 2.0, 3.0]})
        >>> features = read_feature_table(table, "item", ids, option="item_features")
        >>> features.values.tolist(), features.names, features.rows_unused
        ([[2.0], [1.0]], ['price'], 1)
    """
    name = describe_source(table)
    frame = _whole(table, id_column)
    if id_column not in frame.columns:
        raise TableError(name, f"expected the id column {id_column!r}, found {list(frame.columns)}")
    names = [str(c) for c in frame.columns if c != id_column]
    if not names:
        raise TableError(name, f"expected feature columns besides {id_column!r}, found none")
    text_offset = 1 if source_format(table) == "csv" else None
    values = np.empty((len(frame), len(names)), dtype=np.float32)
    for position, column in enumerate(names):
        numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(
            np.float64, na_value=np.nan
        )
        with np.errstate(over="ignore"):
            values[:, position] = numbers
        bad = ~np.isfinite(values[:, position])
        if bad.any():
            row = int(np.argmax(bad))
            raise TableError(
                name,
                f"data row {row + 1}: expected a finite number, got {frame[column].iloc[row]!r}",
                line=None if text_offset is None else row + 1 + text_offset,
                column=column,
            )
    dense = ids.lookup(frame[id_column].to_numpy(dtype=object))
    known = dense >= 0
    counts = np.bincount(dense[known], minlength=len(ids))
    if (counts > 1).any():
        repeated = int(np.argmax(counts > 1))
        row = int(np.flatnonzero(dense == repeated)[1])
        raise TableError(
            name,
            f"data row {row + 1}: id {ids.raw[repeated]!r} has a second row",
            column=id_column,
        )
    if (counts == 0).any():
        missing = int(np.argmax(counts == 0))
        raise ValueError(
            f"{option}: {name} has no row for {id_column} {ids.raw[missing]!r} "
            f"({int((counts == 0).sum())} id(s) of the log have none)"
        )
    ordered = np.empty((len(ids), len(names)), dtype=np.float32)
    ordered[dense[known]] = values[known]
    return FeatureTable(name, names, ordered, int((~known).sum()))


def _whole(table, id_column: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    # Every column: read_chunks would refuse to guess the feature names.
    header = list(_columns_of(table))
    chunks = [chunk for chunk, _ in read_chunks(table, header, chunk_size=_TABLE_CHUNK)]
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=header)


def _columns_of(path) -> list[str]:
    kind = source_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow.names
    if kind == "jsonl":
        return list(pd.read_json(path, lines=True, nrows=1).columns)
    delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
    return list(pd.read_csv(path, sep=delimiter, nrows=0).columns)

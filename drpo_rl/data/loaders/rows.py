"""Checking the values of a chunk of interaction rows, column by column.

Each column kind has one rule (:data:`KINDS`): ids are non-empty, rewards are finite numbers
within the reward scale, propensities are probabilities in (0, 1], times are finite numbers
(seconds) or ISO-8601 date-times. :func:`check_chunk` applies them to a chunk and returns
the converted values with a mask of the rows that break a rule; :class:`BadRows` counts
those rows, or raises at the first one with its source, row, column and value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from envs.common.tables import TableError

__all__ = ["BAD_ROWS", "KINDS", "BadRows", "CheckedChunk", "check_chunk"]

log = logging.getLogger("drpo_rl.data.loaders")

#: What to do with a row that breaks a rule: refuse the whole source, or skip and count it.
BAD_ROWS = ("raise", "skip")


def _ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    raw = values.to_numpy(dtype=object)
    bad = pd.isna(values).to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    return raw, bad


def _numbers(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return np.full(len(values), np.nan)
    numbers = pd.to_numeric(values, errors="coerce")
    return np.array(numbers.to_numpy(dtype=np.float64, na_value=np.nan))


def _times(values: pd.Series) -> np.ndarray:
    seconds = _numbers(values)
    text = np.isnan(seconds) & ~pd.isna(values).to_numpy()
    if text.any():
        stamps = pd.to_datetime(values[text], errors="coerce", utc=True, format="ISO8601")
        parsed = stamps.notna().to_numpy()
        epoch = pd.Timestamp(0, tz="UTC")
        seconds[np.flatnonzero(text)[parsed]] = (
            (stamps[parsed] - epoch).dt.total_seconds().to_numpy()
        )
    return seconds


@dataclass(frozen=True)
class _Kind:
    convert: object  # Series -> (values, bad) or values
    expected: str


def _kinds(reward_scale: tuple[float, float]) -> dict[str, _Kind]:
    low, high = reward_scale
    return {
        "id": _Kind(_ids, "a non-empty id"),
        "reward": _Kind(_numbers, f"a reward in [{low:g}, {high:g}]"),
        "propensity": _Kind(_numbers, "a propensity in (0, 1]"),
        "time": _Kind(_times, "a time: a finite number (seconds) or an ISO-8601 date-time"),
    }


#: The column kinds: role -> kind.
KINDS = {
    "user": "id",
    "item": "id",
    "session": "id",
    "reward": "reward",
    "propensity": "propensity",
    "time": "time",
}


@dataclass
class CheckedChunk:
    """Converted values of a chunk (role -> array over all its rows) and the bad rows.

    ``bad_column[r]`` is the index (in ``roles``) of the first column row ``r`` breaks, -1
    for a good row.

    Example:
        >>> chunk = CheckedChunk(["reward"], {"reward": np.array([0.5, 2.0])}, np.array([-1, 0]))
        >>> chunk.good.tolist()
        [True, False]
    """

    roles: list[str]
    values: dict[str, np.ndarray]
    bad_column: np.ndarray

    @property
    def good(self) -> np.ndarray:
        return self.bad_column < 0


def check_chunk(
    chunk: pd.DataFrame, columns: Mapping[str, str], *, reward_scale: tuple[float, float]
) -> CheckedChunk:
    """Convert and check the columns of ``chunk`` (``columns``: role -> column name).

    Examples:
        >>> chunk = pd.DataFrame({"u": ["a", ""], "r": ["1", "0.5"], "t": ["5", "2026-01-01"]})
        >>> checked = check_chunk(chunk, {"user": "u", "reward": "r", "time": "t"},
        ...                       reward_scale=(0.0, 1.0))
        >>> checked.bad_column.tolist(), checked.values["time"].tolist()
        ([-1, 0], [5.0, 1767225600.0])
    """
    kinds = _kinds(reward_scale)
    roles = list(columns)
    values, bad_column = {}, np.full(len(chunk), -1, dtype=np.int64)
    for position, role in enumerate(roles):
        series = chunk[columns[role]].reset_index(drop=True)
        kind = KINDS[role]
        if kind == "id":
            converted, bad = kinds[kind].convert(series)
        else:
            converted = kinds[kind].convert(series)
            bad = ~np.isfinite(converted)
            if kind == "reward":
                bad |= (converted < reward_scale[0]) | (converted > reward_scale[1])
            elif kind == "propensity":
                bad |= (converted <= 0) | (converted > 1)
        values[role] = converted
        bad_column[(bad_column < 0) & bad] = position
    return CheckedChunk(roles, values, bad_column)


@dataclass
class BadRows:
    """The bad-row policy of one load: raise at the first bad row, or skip and count.

    ``counts`` maps a column name to the rows skipped for it; ``first`` keeps the message
    of the first skipped row.

    Example:
        >>> bad = BadRows("log.csv", "skip", {"reward": "liked"}, (0.0, 1.0), line_offset=1)
        >>> bad.handle(np.array([3, 7]), "reward", np.array([2.5, -1.0]))
        >>> bad.counts, bad.first
        ({'liked': 2}, "log.csv, line 4, column 'liked': data row 3: expected ..., got 2.5")
    """

    source: str
    policy: str
    columns: Mapping[str, str]
    reward_scale: tuple[float, float]
    line_offset: int | None = None  # data row r is on line r + offset (text files)
    counts: dict[str, int] = field(default_factory=dict)
    first: str | None = None

    def error(self, row: int, role: str, value: object, expected: str | None = None) -> TableError:
        """The error naming data row ``row`` (1-based), the column of ``role``, ``value``."""
        expected = expected or _kinds(self.reward_scale)[KINDS[role]].expected
        line = None if self.line_offset is None else row + self.line_offset
        return TableError(
            self.source,
            f"data row {row}: expected {expected}, got {value!r}",
            line=line,
            column=self.columns[role],
        )

    def handle(self, rows: np.ndarray, role: str, values: np.ndarray, expected=None) -> None:
        """Rows ``rows`` (1-based) break the rule of ``role`` with ``values``: raise for the
        first, or count them."""
        if not len(rows):
            return
        error = self.error(int(rows[0]), role, _plain(values[0]), expected)
        if self.policy == "raise":
            raise error
        name = self.columns[role]
        self.counts[name] = self.counts.get(name, 0) + len(rows)
        if self.first is None:
            self.first = str(error)
            log.warning("%s (skipping bad rows; counted in metadata['rows_skipped'])", error)

    def handle_chunk(self, checked: CheckedChunk, raw: pd.DataFrame, first_row: int) -> None:
        """Report the bad rows of ``checked`` (a chunk starting at data row ``first_row``)."""
        if checked.good.all():
            return
        if self.policy == "raise":
            row = int(np.argmax(~checked.good))
            role = checked.roles[checked.bad_column[row]]
            raise self.error(first_row + row, role, _plain(raw[self.columns[role]].iloc[row]))
        for position, role in enumerate(checked.roles):
            rows = np.flatnonzero(checked.bad_column == position)
            self.handle(
                first_row + rows, role, raw[self.columns[role]].to_numpy(dtype=object)[rows]
            )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict:
        """JSON-friendly: total, per column, and the first skipped row's message."""
        return {"total": self.total, "by_column": dict(self.counts), "first": self.first}


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value

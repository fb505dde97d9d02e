"""Any interaction log (CSV, Parquet, JSON lines, a DataFrame) as offline logs, streamed.

A log is a table of rows ``(user, item, reward[, propensity], time[, session])``, one row
per logged recommendation; :func:`load_interactions` names its columns with ``columns=``
and writes an :class:`~drpo_rl.data.OfflineLogs` folder laid out as the shipped sequence
loaders' (:mod:`drpo_rl.data.loaders.sequences`): per row the user's ``history_length``
most recent items and their rewards, the step in the trajectory, and the user's features
when a user table is given.

The file is read twice in chunks (:mod:`~drpo_rl.data.loaders.sources`), never whole:

1. each chunk is checked (:mod:`~drpo_rl.data.loaders.rows`), its ids made dense
   (:mod:`~drpo_rl.data.loaders.ids`, order of first appearance, mapping kept in
   ``metadata["user_ids"]`` / ``["item_ids"]``), and its converted columns appended to
   scratch files beside ``out``;
2. the scratch files are replayed in chunks: each row's history comes from a per-user
   window carried from chunk to chunk, and the row is written straight to its place in the
   dataset's memory-mapped storage, trajectories contiguous (a counting sort: each
   trajectory's rows start where the earlier trajectories' end).

Memory is a chunk plus per-user and per-trajectory state, whatever the number of rows.

Rules (each breach is an error naming the source, data row, column and value, or with
``bad_rows="skip"`` the row is skipped and counted in ``metadata["rows_skipped"]``):

- ids non-empty; reward a finite number in ``reward_scale`` (mapped onto [0, 1]);
  propensity in (0, 1]; time a finite number of seconds or an ISO-8601 date-time;
- each user's rows are in time order in the source (as a log appended when events happen
  is): a row earlier than the user's previous row breaks it. Nothing is re-ordered;
- a session id belongs to one user.

Trajectories are the sessions when a ``session`` column is named, else the users; each
ends with ``("next", "done")`` and ``("next", "truncated")`` True (the log stops there,
which says nothing of the user leaving: ``("next", "terminated")`` is False). The
history window is the user's, across sessions.

Splits are by time: ``split=(train, validation, test)`` fractions of the rows; the two
cut-off times (``metadata["splits"]["time_cutoffs"]``) are the times of the rows at those
ranks, and rows at one time fall in one split. The int64 key ``"split"`` holds 0, 1 or 2
per row (:data:`SPLITS`).

Without a propensity column there is no ``behavior_log_prob``: algorithms and estimators
that reweight by the behaviour's probability (importance-sampling and doubly-robust
estimates; BPPO, whose loss is a ratio to the behaviour policy, which ``drpo-rl train``
refuses then) cannot run on the logs; the logged value, behaviour cloning, DRPO and the
other registry algorithms, and direct-method estimates can (``metadata["propensity"]``
says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from drpo_rl.data.dataset import OfflineLogs
from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY
from drpo_rl.data.loaders.features import FeatureTable, read_feature_table
from drpo_rl.data.loaders.ids import IdMap
from drpo_rl.data.loaders.rows import BAD_ROWS, BadRows, check_chunk
from drpo_rl.data.loaders.sequences import observation_layout, window_rows
from drpo_rl.data.loaders.sources import describe_source, read_chunks, source_format
from drpo_rl.data.loaders.splits import (
    SPLITS,
    assign_splits,
    check_split,
    describe_splits,
    time_cutoffs,
)
from drpo_rl.data.loaders.store import existing_logs, write_tables
from drpo_rl.data.staging import StagedDataset
from envs.common.checks import check_choice, check_int, check_number
from envs.common.files import file_sha256
from envs.config import MAX_HISTORY_LENGTH

__all__ = ["DEFAULT_COLUMNS", "SPLITS", "load_interactions"]

#: Column names used for the roles ``columns=`` leaves out (``None``: no such column).
DEFAULT_COLUMNS = {
    "user": "user",
    "item": "item",
    "reward": "reward",
    "propensity": None,
    "time": "time",
    "session": None,
}
_REQUIRED = ("item", "reward", "time")
_SCRATCH = {
    "user": np.int64,
    "item": np.int64,
    "trajectory": np.int64,
    "reward": np.float32,
    "propensity": np.float32,
    "time": np.float64,
}


def load_interactions(
    source: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    *,
    columns: Mapping[str, str | None] | None = None,
    user_features: str | os.PathLike | pd.DataFrame | None = None,
    item_features: str | os.PathLike | pd.DataFrame | None = None,
    history_length: int = 5,
    reward_scale: tuple[float, float] = (0.0, 1.0),
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    bad_rows: str = "raise",
    chunk_size: int = 1_000_000,
    **buffer_kwargs: Any,
) -> OfflineLogs:
    """Load an interaction log into an :class:`~drpo_rl.data.OfflineLogs` at ``out``.

    Args:
        source: a ``.csv``/``.tsv``, ``.parquet`` or ``.jsonl`` file, or a DataFrame.
        out: the dataset folder; one written before from the same source and options is
            re-opened without reading the source, one written otherwise is an error.
        columns: role -> column name for the roles ``"item"``, ``"reward"``, ``"time"``
            (required) and ``"user"``, ``"propensity"``, ``"session"`` (``None``: absent);
            roles left out take :data:`DEFAULT_COLUMNS`. Without a user column (a bandit
            log such as the Open Bandit Dataset) each row is its own user, its id its
            data row, with an empty history.
        user_features: a table (file or DataFrame) with the user column and numeric
            feature columns, one row per user: appended to every observation (and stored
            as ``user_features.pt``, for recommending).
        item_features: the same for items (the item column): stored as
            ``item_features.pt`` [num_items, F] in the dataset folder, dense-id order, for
            two-tower heads and nearest-item recommendation.
        history_length: K, recent items in each observation.
        reward_scale: (lowest, highest) reward; rewards map to (r - lo) / (hi - lo).
        split: fractions of rows (by time) for train, validation and test; sum 1.
        bad_rows: ``"raise"`` (refuse the source at the first bad row) or ``"skip"`` (skip
            bad rows, counted per column in ``metadata["rows_skipped"]``).
        chunk_size: rows per chunk read and written (bounds the memory used).
        **buffer_kwargs: forwarded to :class:`~drpo_rl.data.OfflineLogs`.

    Raises:
        envs.common.tables.TableError: a bad row (``bad_rows="raise"``), a missing column,
            an unreadable file.
        ValueError: bad arguments; a user without features; every row bad.

    Examples:
        >>> import tempfile
        >>> frame = pd.DataFrame({"user": ["ann", "bob", "ann"], "item": ["x", "y", "y"],
        ...                       "reward": [1.0, 0.0, 0.5], "time": [10, 20, 30]})
        >>> logs = load_interactions(frame, f"{tempfile.mkdtemp()}/logs", history_length=1,
        ...                          split=(0.34, 0.33, 0.33))
        >>> rows = logs[:]
        >>> rows["user"].tolist(), rows["action"].tolist(), rows["split"].tolist()
        ([0, 0, 1], [0, 1, 1], [0, 2, 1])
        >>> logs.metadata["user_ids"], logs.metadata["item_ids"]
        (['ann', 'bob'], ['x', 'y'])
        >>> rows["history"].squeeze(-1).tolist()  # ann's second row has seen item "x"
        [-1, 0, -1]
    """
    roles = _columns(columns)
    check_int("history_length", history_length, minimum=0, maximum=MAX_HISTORY_LENGTH)
    check_choice("bad_rows", bad_rows, BAD_ROWS)
    check_int("chunk_size", chunk_size)
    scale = _reward_scale(reward_scale)
    fractions = check_split(split)
    kind = source_format(source)
    options = {
        "columns": roles,
        "history_length": history_length,
        "reward_scale": list(scale),
        "split": list(fractions),
        "bad_rows": bad_rows,
        "user_features": _fingerprint(user_features),
        "item_features": _fingerprint(item_features),
    }
    request = {"loader": "interactions", "source": _fingerprint(source), "options": options}
    found = existing_logs(out, request, **buffer_kwargs)
    if found is not None:
        return found
    name = describe_source(source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    present = {role: column for role, column in roles.items() if column is not None}
    # Data row r is on line r + 1 of a CSV file (its header first), line r of JSON lines.
    line_offset = {"csv": 1, "jsonl": 0}.get(kind)
    bad = BadRows(name, bad_rows, present, scale, line_offset=line_offset)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.scratch-") as tmp:
        scratch = _Scratch(Path(tmp), "propensity" in present)
        first = _read(source, present, chunk_size, bad, scratch)
        users = _features(user_features, present.get("user"), first.users, "user_features")
        items = _features(item_features, present["item"], first.items, "item_features")
        with StagedDataset(out) as staged:
            storage, splits = _write(
                staged, scratch, first, users, history_length, fractions, chunk_size
            )
            metadata = {
                "loader": "interactions",
                "source": {"path": name, "format": kind, "rows_read": first.rows_read},
                "options": options,
                "request": request,
                "reward": f"(reward - {scale[0]:g}) / ({scale[1]:g} - {scale[0]:g})",
                "observation_layout": _layout(history_length, users),
                "propensity": _propensity_note("propensity" in present),
                "num_items": len(first.items),
                "num_users": len(first.users),
                "num_trajectories": len(first.trajectory_length),
                "max_steps": first.max_steps,
                "item_ids": first.items.raw,
                "user_ids": first.users.raw,
                "splits": splits,
                "rows_skipped": bad.summary(),
                "item_features": None if items is None else items.describe(),
            }
            tables = {"item_embeddings": items, "users": users}
            write_tables(
                staged.dir,
                {name: torch.from_numpy(t.values) for name, t in tables.items() if t is not None},
            )
            staged.commit(storage, metadata)
    return OfflineLogs(out, **buffer_kwargs)


def _columns(columns: Mapping[str, str | None] | None) -> dict[str, str | None]:
    given = dict(columns or {})
    unknown = sorted(set(given) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ValueError(
            f"columns: expected roles among {list(DEFAULT_COLUMNS)}, got unknown {unknown}"
        )
    roles = {**DEFAULT_COLUMNS, **given}
    for role in _REQUIRED:
        if not isinstance(roles[role], str):
            raise ValueError(f"columns[{role!r}]: expected a column name, got {roles[role]!r}")
    names = [c for c in roles.values() if c is not None]
    if len(set(names)) != len(names):
        raise ValueError(f"columns: expected one column per role, got {roles}")
    return roles


def _reward_scale(scale) -> tuple[float, float]:
    if not (isinstance(scale, (tuple, list)) and len(scale) == 2):
        raise ValueError(f"reward_scale: expected (lowest, highest), got {scale!r}")
    low = check_number("reward_scale[0]", scale[0])
    high = check_number("reward_scale[1]", scale[1])
    if not low < high:
        raise ValueError(f"reward_scale: expected lowest < highest, got {scale!r}")
    return low, high


def _fingerprint(source) -> Any:
    """What identifies a source's content in the request: a file's SHA-256, a frame's hash."""
    if source is None:
        return None
    if isinstance(source, pd.DataFrame):
        digest = hashlib.sha256(pd.util.hash_pandas_object(source, index=False).to_numpy())
        digest.update(json.dumps([str(c) for c in source.columns]).encode())
        return {"dataframe_sha256": digest.hexdigest()}
    return {"sha256": file_sha256(source)}


def _propensity_note(has_propensity: bool) -> dict:
    if has_propensity:
        return {"logged": True, "key": BEHAVIOR_LOG_PROB_KEY}
    return {
        "logged": False,
        "cannot": "importance-sampling and doubly-robust estimates, and algorithms that "
        "reweight by the behaviour's probability, need behavior_log_prob",
    }


class _Scratch:
    """Checked rows of the first pass, one binary file per column, appended chunk by chunk."""

    def __init__(self, folder: Path, with_propensity: bool) -> None:
        self.folder = folder
        self.names = [n for n in _SCRATCH if with_propensity or n != "propensity"]
        self.rows = 0

    def append(self, values: Mapping[str, np.ndarray]) -> None:
        for name in self.names:
            with open(self.folder / name, "ab") as file:
                np.ascontiguousarray(values[name], dtype=_SCRATCH[name]).tofile(file)
        self.rows += len(values["user"])

    def column(self, name: str) -> np.ndarray:
        return np.memmap(self.folder / name, dtype=_SCRATCH[name], mode="r", shape=(self.rows,))


class _FirstPass:
    """What the first pass learns: ids, trajectory lengths, time range, rows."""

    def __init__(self) -> None:
        self.users, self.items, self.sessions = IdMap(), IdMap(), IdMap()
        self.last_time = np.empty(0)
        self.trajectory_user = np.empty(0, dtype=np.int64)
        self.trajectory_length = np.empty(0, dtype=np.int64)
        self.rows_read = 0

    @property
    def max_steps(self) -> int:
        return int(self.trajectory_length.max())


def _grow(array: np.ndarray, size: int, fill) -> np.ndarray:
    if len(array) >= size:
        return array
    grown = np.full(max(size, 2 * len(array)), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _read(source, present, chunk_size, bad: BadRows, scratch: _Scratch) -> _FirstPass:
    first = _FirstPass()
    has_session = "session" in present
    for chunk, first_row in read_chunks(source, list(present.values()), chunk_size=chunk_size):
        first.rows_read += len(chunk)
        if not len(chunk):
            continue
        checked = check_chunk(chunk, present, reward_scale=bad.reward_scale)
        bad.handle_chunk(checked, chunk, first_row)
        keep = np.flatnonzero(checked.good)
        values = {role: v[keep] for role, v in checked.values.items()}
        rows = first_row + keep
        # No user column: each row is its own user, named by its data row (a bandit log).
        user = first.users.encode(values["user"] if "user" in values else rows)
        first.last_time = _grow(first.last_time, len(first.users), -np.inf)
        in_order = _in_time_order(user, values["time"], first.last_time)
        bad.handle(rows[~in_order], "time", values["time"][~in_order], _ORDER_RULE)
        user, rows = user[in_order], rows[in_order]
        values = {role: v[in_order] for role, v in values.items()}
        if not len(user):
            continue
        np.maximum.at(first.last_time, user, values["time"])
        if has_session:
            trajectory = first.sessions.encode(values["session"])
            count = len(first.sessions)
            first.trajectory_user = _grow(first.trajectory_user, count, -1)
            owner = first.trajectory_user[trajectory]
            other = (owner >= 0) & (owner != user)
            if other.any():
                row = int(np.argmax(other))
                raise bad.error(
                    int(rows[row]),
                    "session",
                    values["session"][row],
                    f"a session of one user (it is user "
                    f"{first.users.raw[owner[row]]!r}'s, this row is user "
                    f"{first.users.raw[user[row]]!r}'s)",
                )
            first.trajectory_user[trajectory] = user
        else:
            trajectory = user
        first.trajectory_length = _grow(first.trajectory_length, int(trajectory.max()) + 1, 0)
        np.add.at(first.trajectory_length, trajectory, 1)
        scratch.append(
            {
                "user": user,
                "item": first.items.encode(values["item"]),
                "trajectory": trajectory,
                "reward": (values["reward"] - bad.reward_scale[0])
                / (bad.reward_scale[1] - bad.reward_scale[0]),
                "propensity": values.get("propensity"),
                "time": values["time"],
            }
        )
    if scratch.rows == 0:
        raise ValueError(
            f"{bad.source}: no rows to load ({first.rows_read} read, {bad.total} skipped)"
        )
    count = len(first.sessions) if has_session else len(first.users)
    first.trajectory_length = first.trajectory_length[:count]
    if len(first.items) < 2:
        raise ValueError(f"{bad.source}: the log holds {len(first.items)} item(s); need >= 2")
    return first


_ORDER_RULE = "a time no earlier than the user's previous row (rows of a user in time order)"


def _in_time_order(user: np.ndarray, time: np.ndarray, last_time: np.ndarray) -> np.ndarray:
    """Rows whose time is no earlier than their user's previous kept row (or ``last_time``
    of the earlier chunks); a row out of order is dropped before the next one is judged."""
    keep = np.ones(len(user), dtype=bool)
    while True:
        index = np.flatnonzero(keep)
        order = index[np.argsort(user[index], kind="stable")]
        u, t = user[order], time[order]
        previous = np.empty_like(t)
        previous[0:1] = last_time[u[0:1]]
        previous[1:] = np.where(u[1:] == u[:-1], t[:-1], last_time[u[1:]])
        late = order[t < previous]
        if not len(late):
            return keep
        keep[late[0] if len(late) == 1 else _first_per_user(late, user)] = False


def _first_per_user(late: np.ndarray, user: np.ndarray) -> np.ndarray:
    # Only the first late row of each user is certainly bad: the next may be in order once
    # it is gone.
    _, first = np.unique(user[late], return_index=True)
    return late[first]


def _features(table, id_column: str | None, ids: IdMap, option: str) -> FeatureTable | None:
    if table is None:
        return None
    if id_column is None:
        raise ValueError(f"{option}: expected None for a log without a user column, got a table")
    return read_feature_table(table, id_column, ids, option=option)


def _layout(history_length: int, users: FeatureTable | None) -> list[dict]:
    layout = observation_layout(history_length)
    if users is not None:
        start = layout[-1]["columns"][1]
        layout.append(
            {
                "name": "user_features",
                "columns": [start, start + users.values.shape[1]],
                "meaning": f"the user's features: {users.names}",
            }
        )
    return layout


def _write(staged, scratch, first, users, history_length, fractions, chunk_size) -> dict:
    rows = scratch.rows
    cutoffs = time_cutoffs(scratch.column("time"), fractions, chunk_size=chunk_size)
    lengths = first.trajectory_length
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    written = np.zeros(len(lengths), dtype=np.int64)
    k, num_items = history_length, len(first.items)
    window = np.full((len(first.users), k), -1, dtype=np.int64)
    window_reward = np.zeros((len(first.users), k), dtype=np.float32)
    user_values = None if users is None else users.values
    storage = staged.make_storage(rows)
    counts = np.zeros(3, dtype=np.int64)
    for start in range(0, rows, chunk_size):
        part = {
            name: np.asarray(scratch.column(name)[start : start + chunk_size])
            for name in scratch.names
        }
        step = _steps(part["trajectory"], written)
        history, history_reward = _histories(
            part["user"], part["item"], part["reward"], window, window_reward
        )
        split = assign_splits(part["time"], cutoffs)
        counts += np.bincount(split, minlength=3)
        data = _rows(
            part,
            step,
            lengths,
            history,
            history_reward,
            split,
            num_items,
            first.max_steps,
            user_values,
        )
        storage.set(torch.from_numpy(starts[part["trajectory"]] + step), data)
    return storage, describe_splits(fractions, cutoffs, counts)


def _steps(trajectory: np.ndarray, written: np.ndarray) -> np.ndarray:
    """Each row's step in its trajectory (rows in source order), advancing ``written``."""
    order = np.argsort(trajectory, kind="stable")
    sorted_traj = trajectory[order]
    new = np.r_[True, sorted_traj[1:] != sorted_traj[:-1]]
    group_start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    step = np.empty(len(order), dtype=np.int64)
    step[order] = written[sorted_traj] + np.arange(len(order)) - group_start
    np.add.at(written, trajectory, 1)
    return step


def _histories(user, item, reward, window, window_reward):
    """Each row's K previous items and rewards of its user, newest first (rows in source
    order), from the chunk itself and the carried ``window`` (updated in place)."""
    k = window.shape[1]
    order = np.argsort(user, kind="stable")
    u, it, r = user[order], item[order], reward[order]
    new = np.r_[True, u[1:] != u[:-1]]
    position = np.arange(len(u)) - np.maximum.accumulate(np.where(new, np.arange(len(u)), 0))
    history = np.empty((len(u), k), dtype=np.int64)
    history_reward = np.empty((len(u), k), dtype=np.float32)
    for slot in range(k):
        back = slot + 1
        inside = position >= back
        source = np.arange(len(u)) - back
        carried = np.clip(back - position - 1, 0, k - 1)
        history[:, slot] = np.where(inside, it[np.maximum(source, 0)], window[u, carried])
        history_reward[:, slot] = np.where(
            inside, r[np.maximum(source, 0)], window_reward[u, carried]
        )
    if k:
        last = np.r_[u[1:] != u[:-1], True]
        window[u[last]] = np.concatenate([it[last, None], history[last, : k - 1]], axis=1)
        window_reward[u[last]] = np.concatenate(
            [r[last, None], history_reward[last, : k - 1]], axis=1
        )
    out_history = np.empty_like(history)
    out_reward = np.empty_like(history_reward)
    out_history[order], out_reward[order] = history, history_reward
    return out_history, out_reward


def _rows(part, step, lengths, history, history_reward, split, num_items, max_steps, users):
    data = window_rows(
        part["item"],
        part["reward"],
        history,
        history_reward,
        step=step,
        end=step == lengths[part["trajectory"]] - 1,
        user=part["user"],
        trajectory=part["trajectory"],
        timestamp=part["time"],
        num_items=num_items,
        max_steps=max_steps,
        features=None if users is None else users[part["user"]],
    )
    data["split"] = torch.from_numpy(split.astype(np.int64))
    if "propensity" in part:
        data[BEHAVIOR_LOG_PROB_KEY] = torch.from_numpy(np.log(part["propensity"]))
    return data

"""KuaiRand and KuaiRec interaction logs (Kuaishou short videos) as offline logs.

Both are per-user sequences laid out as :mod:`drpo_rl.data.loaders.sequences` (observation
``(history + 1) / N | history rewards | step / max_steps``, ``"history"``, ``"action"`` =
video index with ``metadata["item_ids"][a]`` the ``video_id``, ``"user"``, ``"timestamp"``
in seconds, one trajectory per user). Neither records propensities, so there is no
``behavior_log_prob``.

KuaiRand (``log_standard_*.csv``, ``log_random_*.csv``; comma-separated with a header):
columns ``user_id``, ``video_id``, ``time_ms`` (milliseconds since the epoch) and the
binary feedback chosen as reward (``reward="is_click"`` by default; any of
:data:`KUAIRAND_SIGNALS`) are required; the reward is that 0/1 signal. Where present,
``is_rand`` (1: a randomly exposed video) and ``tab`` (the app page) are kept as int64
keys of the same names. Several files (e.g. the standard and the random logs) load into
one set of logs.

KuaiRec (``small_matrix.csv``, ``big_matrix.csv``): ``user_id``, ``video_id``,
``timestamp`` (seconds) and ``watch_ratio`` (play time / video length, >= 0, above 1 for
replays) are required. The reward is ``min(watch_ratio, watch_ratio_cap) /
watch_ratio_cap``; ``"watch_ratio"`` keeps the value read and ``metadata["rows_capped"]``
counts the rows at the cap. KuaiRec leaves the time of some rows empty: that is an error
unless ``missing_timestamps="drop"``, which removes those rows and reports how many.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drpo_rl.data.dataset import OfflineLogs
from drpo_rl.data.loaders.finite import as_float32
from drpo_rl.data.loaders.sequences import keep_active_users, observation_layout, sequence_logs
from drpo_rl.data.loaders.store import ParsedLogs, open_or_write
from envs.common.checks import check_choice, check_int, check_number
from envs.common.files import file_sha256
from envs.common.tables import TableError, read_table
from envs.config import MAX_HISTORY_LENGTH

__all__ = [
    "KUAIRAND_SIGNALS",
    "load_kuairand",
    "load_kuairec",
    "parse_kuairand",
    "parse_kuairec",
]

#: The 0/1 feedback columns of KuaiRand's logs that can serve as reward.
KUAIRAND_SIGNALS = (
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "is_profile_enter",
)
_KUAIRAND_EXTRAS = ("is_rand", "tab")


def parse_kuairand(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    reward: str = "is_click",
    history_length: int = 5,
    min_interactions_per_user: int = 1,
) -> ParsedLogs:
    """Read KuaiRand log files into offline logs, without writing anything.

    Args:
        paths: one log file or several (read in turn; rows of all are merged by user and
            time).
        reward: the 0/1 column used as reward, one of :data:`KUAIRAND_SIGNALS`.
        history_length: K, previous videos in each observation.
        min_interactions_per_user: row filter; the rows it removes are logged and counted
            in ``metadata["rows_removed"]``.

    Raises:
        envs.common.tables.TableError: a malformed file (names the file, line and column).

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "log_standard_4_08_to_4_21_pure.csv"
        >>> _ = f.write_text("user_id,video_id,date,hourmin,time_ms,is_click,is_rand,tab\\n"
        ...                  "0,501,20220408,900,1649379600000,1,0,1\\n"
        ...                  "0,77,20220408,901,1649379660000,0,1,1\\n")
        >>> logs = parse_kuairand(f, history_length=2)
        >>> logs.data["action"].tolist(), logs.metadata["item_ids"], logs.data["is_rand"].tolist()
        ([1, 0], [77, 501], [0, 1])
        >>> logs.data["next", "reward"].squeeze(-1).tolist(), logs.data["timestamp"].tolist()
        ([1.0, 0.0], [1649379600.0, 1649379660.0])
    """
    check_choice("reward", reward, KUAIRAND_SIGNALS)
    _check_common(history_length, min_interactions_per_user)
    paths = _as_paths(paths)
    columns = {"user_id": "id", "video_id": "id", "time_ms": "int", reward: "binary"}
    columns.update({"is_rand": "binary", "tab": "int"})
    frames = [read_table(p, columns, optional=_KUAIRAND_EXTRAS) for p in paths]
    extras = [c for c in _KUAIRAND_EXTRAS if all(c in f.columns for f in frames)]

    def column(name: str, dtype) -> np.ndarray:
        return np.concatenate([f[name].to_numpy(dtype=dtype) for f in frames])

    keep, rows_removed = keep_active_users(
        column("user_id", np.int64),
        min_interactions_per_user,
        source=", ".join(map(str, paths)),
        option="min_interactions_per_user",
    )
    parsed = _sequence(
        column("user_id", np.int64)[keep],
        column("video_id", np.int64)[keep],
        column(reward, np.float32)[keep],
        column("time_ms", np.float64)[keep] / 1000.0,
        history_length,
        {name: torch.from_numpy(column(name, np.int64)[keep]) for name in extras},
    )
    parsed.metadata.update(
        loader="kuairand",
        source=_sources(paths, frames),
        options={
            "reward": reward,
            "history_length": history_length,
            "min_interactions_per_user": min_interactions_per_user,
        },
        reward=f"{reward} (0 or 1)",
        extra_keys=extras,
        rows_removed=rows_removed,
    )
    return parsed


def load_kuairand(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    reward: str = "is_click",
    history_length: int = 5,
    min_interactions_per_user: int = 1,
    **buffer_kwargs: Any,
) -> OfflineLogs:
    """:func:`parse_kuairand` stored as an :class:`~drpo_rl.data.OfflineLogs` at ``out``
    (re-opened without parsing when made from the same files and options)."""
    options = {
        "reward": reward,
        "history_length": history_length,
        "min_interactions_per_user": min_interactions_per_user,
    }
    return open_or_write(
        out,
        {"loader": "kuairand", "sha256": _hashes(paths), "options": options},
        lambda: parse_kuairand(paths, **options),
        **buffer_kwargs,
    )


def parse_kuairec(
    path: str | os.PathLike,
    *,
    watch_ratio_cap: float = 2.0,
    history_length: int = 5,
    min_interactions_per_user: int = 1,
    missing_timestamps: str = "raise",
) -> ParsedLogs:
    """Read a KuaiRec interaction matrix file into offline logs, without writing anything.

    Args:
        path: ``small_matrix.csv`` or ``big_matrix.csv``.
        watch_ratio_cap: the watch ratio that earns the full reward of 1.
        history_length: K, previous videos in each observation.
        min_interactions_per_user: row filter, reported in ``metadata["rows_removed"]``.
        missing_timestamps: ``"raise"`` (an empty ``timestamp`` is an error naming its line)
            or ``"drop"`` (such rows are removed and counted in ``rows_removed``).

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "small_matrix.csv"
        >>> _ = f.write_text("user_id,video_id,play_duration,video_duration,date,"
        ...                  "timestamp,watch_ratio\\n"
        ...                  "14,148,4381,6067,20200705,1593898068.378,0.72\\n"
        ...                  "14,183,11635,6100,20200705,1593898080.057,1.91\\n"
        ...                  "14,3649,22422,10867,,,2.07\\n")
        >>> logs = parse_kuairec(f, missing_timestamps="drop")
        >>> logs.rows_removed, logs.data["next", "reward"].squeeze(-1).tolist()
        ({'missing_timestamps': 1}, [0.36000001430511475, 0.9549999833106995])
    """
    check_choice("missing_timestamps", missing_timestamps, ("raise", "drop"))
    check_number("watch_ratio_cap", watch_ratio_cap, minimum=0, strict=True)
    _check_common(history_length, min_interactions_per_user)
    frame = read_table(
        path,
        {"user_id": "id", "video_id": "id", "timestamp": "number", "watch_ratio": "number"},
        missing_ok=("timestamp",) if missing_timestamps == "drop" else (),
    )
    watch = frame["watch_ratio"].to_numpy(dtype=np.float64)
    if (watch < 0).any():
        row = int(np.argmax(watch < 0))
        raise TableError(
            path,
            f"expected a watch ratio >= 0, got {float(watch[row])!r}",
            line=frame.attrs["first_line"] + row,
            column="watch_ratio",
        )
    timestamp = frame["timestamp"].to_numpy(dtype=np.float64)
    has_time = ~np.isnan(timestamp)
    rows_removed = {}
    if missing_timestamps == "drop":
        rows_removed["missing_timestamps"] = int((~has_time).sum())
        if not has_time.any():
            raise ValueError(
                f"{path}: missing_timestamps='drop' removes every row (no row has a timestamp)"
            )
    user = frame["user_id"].to_numpy(dtype=np.int64)
    active, by_activity = keep_active_users(
        user[has_time],
        min_interactions_per_user,
        source=str(path),
        option="min_interactions_per_user",
    )
    keep = np.flatnonzero(has_time)[active]
    rows_removed.update(by_activity)
    watch32 = as_float32(
        watch, path=path, column="watch_ratio", first_line=frame.attrs["first_line"]
    )
    reward = np.minimum(watch[keep], watch_ratio_cap) / watch_ratio_cap
    parsed = _sequence(
        user[keep],
        frame["video_id"].to_numpy(dtype=np.int64)[keep],
        reward.astype(np.float32),
        timestamp[keep],
        history_length,
        {"watch_ratio": torch.from_numpy(watch32[keep])},
    )
    parsed.metadata.update(
        loader="kuairec",
        source=_sources([Path(path)], [frame]),
        options={
            "watch_ratio_cap": float(watch_ratio_cap),
            "history_length": history_length,
            "min_interactions_per_user": min_interactions_per_user,
            "missing_timestamps": missing_timestamps,
        },
        reward=f"min(watch_ratio, {watch_ratio_cap:g}) / {watch_ratio_cap:g}",
        rows_capped=int((watch[keep] >= watch_ratio_cap).sum()),
        extra_keys=["watch_ratio"],
        rows_removed=rows_removed,
    )
    return parsed


def load_kuairec(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    watch_ratio_cap: float = 2.0,
    history_length: int = 5,
    min_interactions_per_user: int = 1,
    missing_timestamps: str = "raise",
    **buffer_kwargs: Any,
) -> OfflineLogs:
    """:func:`parse_kuairec` stored as an :class:`~drpo_rl.data.OfflineLogs` at ``out``
    (re-opened without parsing when made from the same file and options)."""
    # Checked before float(): float(True) would pass as a cap of 1.0.
    check_number("watch_ratio_cap", watch_ratio_cap, minimum=0, strict=True)
    options = {
        "watch_ratio_cap": float(watch_ratio_cap),
        "history_length": history_length,
        "min_interactions_per_user": min_interactions_per_user,
        "missing_timestamps": missing_timestamps,
    }
    return open_or_write(
        out,
        {"loader": "kuairec", "sha256": _hashes(path), "options": options},
        lambda: parse_kuairec(path, **options),
        **buffer_kwargs,
    )


def _sequence(user, video, reward, seconds, history_length, extras) -> ParsedLogs:
    user_ids, user_index = np.unique(user, return_inverse=True)
    item_ids, item_index = np.unique(video, return_inverse=True)
    data, facts = sequence_logs(
        user_index,
        item_index,
        reward,
        seconds,
        num_items=len(item_ids),
        history_length=history_length,
        user_ids=user_ids,
        item_ids=item_ids,
    )
    order = torch.from_numpy(facts["order"])
    for name, values in extras.items():
        data[name] = values[order]
    metadata = {
        "observation_layout": observation_layout(history_length),
        "max_steps": facts["max_steps"],
        "num_items": len(item_ids),
        "num_users": len(user_ids),
        "item_ids": item_ids.tolist(),
        "user_ids": user_ids.tolist(),
    }
    return ParsedLogs(data, metadata)


def _check_common(history_length: int, minimum: int) -> None:
    check_int("history_length", history_length, minimum=0, maximum=MAX_HISTORY_LENGTH)
    check_int("min_interactions_per_user", minimum)


def _as_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths: expected at least one file")
    return paths


def _sources(paths: list[Path], frames) -> list[dict]:
    return [
        {"path": str(p.resolve()), "rows_in_file": len(f)}
        for p, f in zip(paths, frames, strict=True)
    ]


def _hashes(paths) -> list[str]:
    return [file_sha256(p) for p in _as_paths(paths)]

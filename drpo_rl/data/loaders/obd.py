"""The Open Bandit Dataset (ZOZOTOWN fashion recommendations) as offline logs.

OBD logs one impression per row: at slate ``position`` (1, 2 or 3), the logging policy
(uniform ``random`` or Bernoulli Thompson sampling, ``bts``) showed ``item_id`` with
probability ``propensity_score``, and the user clicked or not. Columns read (comma-
separated, header; the unnamed first column is the row index and is not read):
``timestamp``, ``item_id``, ``position``, ``click``, ``propensity_score``,
``user_feature_*`` (hashed categories) and ``user-item_affinity_*`` (numbers).

A contextual bandit, horizon 1; the keys, with P positions, F_j categories of user feature
j and A affinity columns:

======================  ===================  ===========================================
key                     shape, dtype         meaning
======================  ===================  ===========================================
observation             [R, P+sum F_j+A]     one-hot position | one-hot of each user
                        float32              feature (categories in
                                             ``metadata["vocabulary"]`` order) |
                                             user-item affinities as read
action                  [R] int64            ``item_id`` (already 0..N-1 in OBD)
behavior_log_prob       [R] float32          log(propensity_score)
("next", "reward")      [R, 1] float32       click (0 or 1)
position                [R] int64            slate position, as in the file (1-based)
timestamp               [R] float64          seconds since the epoch
======================  ===================  ===========================================

plus ``("next", "observation")`` (= observation), ``("next", "item")`` (= action) and
``("next", "done" | "terminated")`` True, ``("next", "truncated")`` False.

The shipped samples (10,000 rows per file) come with the ``obp`` package
(``pip install --no-deps --ignore-requires-python obp==0.5.7``); :func:`obd_sample_path`
finds them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from drpo_rl.data.dataset import OfflineLogs
from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY
from drpo_rl.data.loaders.finite import as_float32
from drpo_rl.data.loaders.store import ParsedLogs, open_or_write
from envs.common.checks import check_choice, check_int
from envs.common.files import file_sha256
from envs.common.tables import TableError, read_table
from envs.config import MAX_NUM_ITEMS

__all__ = ["load_obd", "obd_sample_path", "parse_obd"]

_USER_FEATURE = "user_feature_"
_AFFINITY = "user-item_affinity_"


def obd_sample_path(behavior_policy: str = "random", campaign: str = "all") -> Path | None:
    """The OBD sample file shipped by the installed ``obp`` package, or None without it.

    Found without importing obp (whose import needs scikit-learn and more).

    Example:
        >>> obd_sample_path("bts", "teens")
        Traceback (most recent call last):
        ...
        ValueError: campaign: expected one of ['all', 'men', 'women'], got 'teens'
    """
    check_choice("behavior_policy", behavior_policy, ("random", "bts"))
    check_choice("campaign", campaign, ("all", "men", "women"))
    spec = importlib.util.find_spec("obp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "dataset" / "obd" / behavior_policy / campaign / f"{campaign}.csv"
        if path.is_file():
            return path
    return None


def parse_obd(
    path: str | os.PathLike,
    *,
    num_items: int | None = None,
    vocabulary: Mapping[str, Sequence] | None = None,
) -> ParsedLogs:
    """Read an OBD log file into offline logs, without writing anything.

    Args:
        path: e.g. ``obd/random/all/all.csv``.
        num_items: N; by default the rows of ``item_context.csv`` beside the file when it
            exists, else the largest ``item_id`` + 1. An ``item_id`` >= N is an error.
        vocabulary: the categories of ``position`` and of each user feature, in one-hot
            order (``metadata["vocabulary"]`` of other logs, so that two files share an
            observation layout); a value outside it is an error naming its line. By
            default the sorted values of this file.

    Raises:
        envs.common.tables.TableError: a malformed file, a propensity outside (0, 1], a position
            below 1, an item or category outside ``num_items`` or ``vocabulary``.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "all.csv"
        >>> _ = f.write_text(
        ...     ",timestamp,item_id,position,click,propensity_score,user_feature_0,"
        ...     "user-item_affinity_0,user-item_affinity_1\\n"
        ...     "0,2019-11-24 00:00:34.762830+00:00,1,3,0,0.5,ab12,0.0,1.5\\n"
        ...     "1,2019-11-24 00:00:53.965051+00:00,0,1,1,0.25,cd34,2.0,0.0\\n")
        >>> logs = parse_obd(f)
        >>> logs.data["observation"].tolist()  # position 1, 3 | ab12, cd34 | affinities
        [[0.0, 1.0, 1.0, 0.0, 0.0, 1.5], [1.0, 0.0, 0.0, 1.0, 2.0, 0.0]]
        >>> logs.data["behavior_log_prob"].exp().tolist(), logs.metadata["num_items"]
        ([0.5, 0.25], 2)
    """
    path = Path(path)
    frame = read_table(
        path,
        {
            "timestamp": "datetime",
            "item_id": "id",
            "position": "int",
            "click": "binary",
            "propensity_score": "number",
        },
        extra_columns={_USER_FEATURE: "text", _AFFINITY: "number"},
    )
    first_line = frame.attrs["first_line"]

    def fail(row: int, column: str, problem: str) -> TableError:
        return TableError(path, problem, line=first_line + row, column=column)

    propensity = frame["propensity_score"].to_numpy(dtype=np.float64)
    bad = ~((propensity > 0) & (propensity <= 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise fail(
            row,
            "propensity_score",
            f"expected a probability in (0, 1], got {float(propensity[row])!r}",
        )
    position = frame["position"].to_numpy(dtype=np.int64)
    if (position < 1).any():
        row = int(np.argmax(position < 1))
        raise fail(row, "position", f"expected a slate position >= 1, got {position[row]}")
    item = frame["item_id"].to_numpy(dtype=np.int64)
    num_items, items_from = _num_items(path, item, num_items, first_line)
    if (item >= num_items).any():
        row = int(np.argmax(item >= num_items))
        raise fail(
            row, "item_id", f"expected an item id < {num_items} ({items_from}), got {item[row]}"
        )

    features = [c for c in frame.columns if c.startswith(_USER_FEATURE)]
    affinities = [c for c in frame.columns if c.startswith(_AFFINITY)]
    given = _check_vocabulary(vocabulary, ["position", *features])
    vocab: dict[str, list] = {}
    blocks = []
    for name in ["position", *features]:
        values = frame[name].to_numpy()
        if name in given:
            categories = given[name]
        else:
            categories = sorted(set(values.tolist()))
        vocab[name] = [v.item() if isinstance(v, np.generic) else v for v in categories]
        lookup = {v: i for i, v in enumerate(vocab[name])}
        index = np.array([lookup.get(v, -1) for v in values.tolist()], dtype=np.int64)
        if (index < 0).any():
            row = int(np.argmax(index < 0))
            raise fail(
                row,
                name,
                f"value {values[row]!r} is not in the given vocabulary "
                f"({len(vocab[name])} categories)",
            )
        blocks.append(np.eye(len(vocab[name]), dtype=np.float32)[index])
    for name in affinities:
        blocks.append(
            as_float32(
                frame[name].to_numpy(dtype=np.float64),
                path=path,
                column=name,
                first_line=first_line,
            )[:, None]
        )
    observation = torch.from_numpy(np.concatenate(blocks, axis=1))

    rows = len(frame)
    action = torch.tensor(item)
    ones = torch.ones(rows, 1, dtype=torch.bool)
    # Through timedeltas: the datetime64 unit pandas picks (ns, us) varies with versions.
    when = frame["timestamp"]
    seconds = (when - when.iloc[0]).dt.total_seconds().to_numpy() + when.iloc[0].timestamp()
    data = TensorDict(
        {
            "observation": observation,
            "action": action,
            BEHAVIOR_LOG_PROB_KEY: torch.from_numpy(np.log(propensity).astype(np.float32)),
            "position": torch.tensor(position),
            "timestamp": torch.from_numpy(seconds.astype(np.float64)),
            ("next", "observation"): observation.clone(),
            ("next", "reward"): torch.tensor(frame["click"].to_numpy(dtype=np.float32)).unsqueeze(
                -1
            ),
            ("next", "item"): action.clone(),
            ("next", "done"): ones,
            ("next", "terminated"): ones.clone(),
            ("next", "truncated"): torch.zeros_like(ones),
        },
        batch_size=[rows],
    )
    layout, start = [], 0
    for name, width in [(n, len(vocab[n])) for n in vocab] + [("affinity", len(affinities))]:
        meaning = "user-item affinities" if name == "affinity" else f"one-hot {name}"
        layout.append({"name": name, "columns": [start, start + width], "meaning": meaning})
        start += width
    metadata = {
        "loader": "obd",
        "source": {"path": str(path.resolve()), "rows_in_file": rows},
        "options": {"num_items": num_items, "vocabulary": given or None},
        "num_items": num_items,
        "num_items_from": items_from,
        "item_ids": list(range(num_items)),
        "vocabulary": vocab,
        "affinity_columns": affinities,
        "observation_layout": layout,
        "reward": "click (0 or 1)",
        "rows_removed": {},
    }
    return ParsedLogs(data, metadata)


def load_obd(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    num_items: int | None = None,
    vocabulary: Mapping[str, Sequence] | None = None,
    **buffer_kwargs: Any,
) -> OfflineLogs:
    """:func:`parse_obd` stored as an :class:`~drpo_rl.data.OfflineLogs` at ``out``
    (re-opened without parsing when made from the same file and options)."""
    request = {
        "loader": "obd",
        "sha256": file_sha256(path),
        "options": {
            "num_items": num_items,
            "vocabulary": None
            if vocabulary is None
            else {k: list(v) for k, v in vocabulary.items()},
        },
    }
    return open_or_write(
        out,
        request,
        lambda: parse_obd(path, num_items=num_items, vocabulary=vocabulary),
        **buffer_kwargs,
    )


def _num_items(
    path: Path, item: np.ndarray, num_items: int | None, first_line: int
) -> tuple[int, str]:
    if num_items is not None:
        return check_int("num_items", num_items, maximum=MAX_NUM_ITEMS), "num_items="
    context = path.parent / "item_context.csv"
    if context.is_file():
        items = read_table(context, {"item_id": "id"})["item_id"].to_numpy()
        expected = np.arange(len(items))
        if not np.array_equal(np.sort(items), expected):
            raise TableError(
                context, f"expected item ids 0..{len(items) - 1}, each once", column="item_id"
            )
        return len(items), f"the rows of {context}"
    largest = int(item.max())
    if largest >= MAX_NUM_ITEMS:
        row = int(np.argmax(item))
        raise TableError(
            path,
            f"item_id {largest} would make a catalogue of {largest + 1} items (ids are "
            f"0..N-1; at most {MAX_NUM_ITEMS} items); fix the id, or pass num_items, or put "
            "the item_context.csv beside the file",
            line=first_line + row,
            column="item_id",
        )
    return largest + 1, "the largest item_id + 1"


def _check_vocabulary(vocabulary: Mapping[str, Sequence] | None, names: list[str]) -> dict:
    """The given vocabulary as lists, if it has exactly the file's categorical columns, each
    with distinct categories (a missing or extra column would give another layout quietly)."""
    if vocabulary is None:
        return {}
    if not isinstance(vocabulary, Mapping) or set(vocabulary) != set(names):
        found = sorted(vocabulary) if isinstance(vocabulary, Mapping) else vocabulary
        raise ValueError(
            f"vocabulary: expected the categories of exactly the file's columns {names}, "
            f"got {found!r}"
        )
    given = {}
    for name in names:
        categories = vocabulary[name]
        if isinstance(categories, (str, bytes)) or not isinstance(categories, Sequence):
            raise ValueError(
                f"vocabulary[{name!r}]: expected a list of categories, got {categories!r}"
            )
        if len(set(categories)) != len(categories) or not categories:
            raise ValueError(
                f"vocabulary[{name!r}]: expected distinct categories (at least one), got "
                f"{list(categories)!r}"
            )
        given[name] = list(categories)
    return given

"""MovieLens (and any ratings file of :mod:`envs.ratings`) as offline logs.

Each rating is one logged interaction: the user (observation: their history so far) was
shown the movie (action: its index) and gave the rating (reward). Keys and observation
layout: :mod:`drpo_rl.data.loaders.sequences`, with K = ``history_length``:

====================  =====================  ============================================
key                   shape, dtype           meaning
====================  =====================  ============================================
observation           [R, 2K+1] float32      (history + 1) / N | history rewards |
                                             step / max_steps
history               [R, K] int64           previous item indices, newest first; -1
history_reward        [R, K] float32         their rewards
action                [R] int64              item index; ``metadata["item_ids"][a]`` is
                                             the movie id in the file
("next", "reward")    [R, 1] float32         (rating - lowest) / (highest - lowest):
                                             MovieLens stars 1..5 -> 0, .25, .5, .75, 1
rating                [R] float32            the rating as written in the file
user                  [R] int64              user index (``metadata["user_ids"]``)
user_id, item_id      [R] int64              the ids as written in the file
timestamp             [R] float64            seconds since the epoch (file order index
                                             where the file has no timestamp)
====================  =====================  ============================================

plus ``("next", "observation" | "history" | "history_reward" | "item" | "done" |
"terminated" | "truncated")`` and ``("collector", "traj_ids")``. There is no
``behavior_log_prob``: MovieLens records no propensities.

With ``user_features=`` (e.g. ``u.user``), the observation continues with the user's
encoded age, gender and occupation (:mod:`~drpo_rl.data.loaders.user_features`;
``metadata["observation_layout"]`` lists every column range).

With ``world=`` (the ``MovieLens100K`` env, or any ``FittedRatings`` env made from the
file), the logs take that env's layout instead (:mod:`~drpo_rl.data.loaders.world`):
the env's observation, sessions of its ``max_length`` and its action, so that a policy
trained on the logs is evaluated in the env unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drpo_rl.data.dataset import OfflineLogs
from drpo_rl.data.loaders.finite import as_float32
from drpo_rl.data.loaders.sequences import keep_active_users, observation_layout, sequence_logs
from drpo_rl.data.loaders.store import ParsedLogs, open_or_write
from drpo_rl.data.loaders.user_features import read_user_features
from drpo_rl.data.loaders.world import world_description, world_logs
from envs.common.checks import check_int
from envs.common.files import file_sha256
from envs.config import MAX_HISTORY_LENGTH
from envs.fitted import recbole_ml100k_path
from envs.ratings import read_ratings

__all__ = ["load_movielens", "parse_movielens", "recbole_ml100k_path"]


def parse_movielens(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    history_length: int = 5,
    min_ratings_per_user: int = 1,
    user_features: str | os.PathLike | None = None,
    world: Any = None,
) -> ParsedLogs:
    """Read a ratings file into offline logs, without writing anything.

    Args:
        path: ``u.data`` (ml-100k), ``ratings.dat`` (ml-1m), a RecBole ``.inter`` file or a
            ``.csv`` with ``user_id,item_id,rating[,timestamp]`` (see
            :func:`envs.ratings.read_ratings`).
        format: the ratings format, guessed from the file name when None.
        rating_scale: (lowest, highest) rating; a rating outside is an error.
        history_length: K, previous items in each observation.
        min_ratings_per_user: row filter: users with fewer ratings are removed; how many
            rows went is logged and kept in ``metadata["rows_removed"]``.
        user_features: a users file (``u.user``, ``users.dat`` or RecBole ``.user``, see
            :mod:`~drpo_rl.data.loaders.user_features`); its encoded age, gender and
            occupation are appended to the observation (and ``("next", "observation")``).
            Every user of the ratings must have a row.
        world: a data-fitted env made from this file (e.g. ``envs.make_env(
            "MovieLens100K")``): the logs then take that env's observation layout, sessions
            and action (:mod:`~drpo_rl.data.loaders.world`), so that a policy trained on
            them is evaluated in the env as it is; ``history_length`` must be the env's.

    Raises:
        envs.common.tables.TableError: a malformed file (names the file, line and column).
        ValueError: bad arguments, or the filter removes every row.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "u.data"
        >>> _ = f.write_text("7\\t30\\t5\\t100\\n7\\t12\\t3\\t50\\n2\\t30\\t1\\t70\\n")
        >>> logs = parse_movielens(f, history_length=1)
        >>> logs.data["action"].tolist(), logs.metadata["item_ids"]
        ([1, 0, 1], [12, 30])
        >>> logs.data["next", "reward"].squeeze(-1).tolist()  # 1, 3, 5 stars
        [0.0, 0.5, 1.0]
        >>> logs.data["history"].squeeze(-1).tolist()  # user 7 saw movie 12 first
        [-1, -1, 0]
        >>> parse_movielens(f, min_ratings_per_user=2).rows_removed
        {'min_ratings_per_user': 1}
    """
    _check_options(history_length, min_ratings_per_user)
    _check_world(world, history_length, user_features)
    ratings = read_ratings(path, format=format, rating_scale=rating_scale)
    keep, rows_removed = keep_active_users(
        ratings.user, min_ratings_per_user, source=str(path), option="min_ratings_per_user"
    )
    if world is not None:
        data, facts, tables = world_logs(
            ratings.user[keep],
            ratings.item[keep],
            ratings.rating01[keep],
            ratings.timestamp[keep],
            world,
            source=str(path),
        )
        return ParsedLogs(
            data,
            {
                "loader": "movielens",
                "source": _source(path, ratings),
                "options": _options(
                    format, rating_scale, history_length, min_ratings_per_user, None, world
                ),
                "reward": _reward_rule(ratings),
                **facts,
                "rows_removed": rows_removed,
            },
            tables,
        )
    user_ids, user = np.unique(ratings.user[keep], return_inverse=True)
    item_ids, item = np.unique(ratings.item[keep], return_inverse=True)
    rating01 = ratings.rating01[keep]
    data, facts = sequence_logs(
        user,
        item,
        rating01,
        ratings.timestamp[keep],
        num_items=len(item_ids),
        history_length=history_length,
        user_ids=user_ids,
        item_ids=item_ids,
    )
    rating32 = as_float32(ratings.rating, path=path, column="rating", first_line=ratings.first_line)
    data["rating"] = torch.from_numpy(rating32[keep][facts["order"]])
    layout = observation_layout(history_length)
    features = None
    if user_features is not None:
        features = read_user_features(user_features)
        rows = features.rows_of(user_ids, source=str(path))[data["user"].numpy()]
        extra = torch.from_numpy(features.values[rows])
        for key in ("observation", ("next", "observation")):
            data[key] = torch.cat([data[key], extra], dim=-1)
        start = layout[-1]["columns"][1]
        for part in features.layout:
            layout.append(
                {
                    "name": part["name"],
                    "columns": [start, start + part["width"]],
                    "meaning": part["meaning"],
                }
            )
            start += part["width"]
    metadata = {
        "loader": "movielens",
        "source": _source(path, ratings),
        "options": _options(
            format, rating_scale, history_length, min_ratings_per_user, user_features
        ),
        "reward": _reward_rule(ratings),
        "observation_layout": layout,
        "user_feature_vocabulary": None if features is None else features.vocabulary,
        "max_steps": facts["max_steps"],
        "num_items": len(item_ids),
        "num_users": len(user_ids),
        "item_ids": item_ids.tolist(),
        "user_ids": user_ids.tolist(),
        "rows_removed": rows_removed,
    }
    return ParsedLogs(data, metadata)


def load_movielens(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    history_length: int = 5,
    min_ratings_per_user: int = 1,
    user_features: str | os.PathLike | None = None,
    world: Any = None,
    **buffer_kwargs: Any,
) -> OfflineLogs:
    """:func:`parse_movielens` stored as an :class:`~drpo_rl.data.OfflineLogs` at ``out``.

    Opening ``out`` again with the same file and options reads it back without parsing;
    other options (or a changed file) raise a ``ValueError`` naming the difference.
    ``buffer_kwargs`` (``batch_size``, ``sampler``, ``transform``, ...) go to the dataset.
    """
    _check_options(history_length, min_ratings_per_user)
    _check_world(world, history_length, user_features)
    request = {
        "loader": "movielens",
        "sha256": file_sha256(path),
        "options": _options(
            format, rating_scale, history_length, min_ratings_per_user, user_features, world
        ),
    }
    return open_or_write(
        out,
        request,
        lambda: parse_movielens(
            path,
            format=format,
            rating_scale=rating_scale,
            history_length=history_length,
            min_ratings_per_user=min_ratings_per_user,
            user_features=user_features,
            world=world,
        ),
        **buffer_kwargs,
    )


def _check_options(history_length: int, min_ratings_per_user: int) -> None:
    check_int("history_length", history_length, minimum=0, maximum=MAX_HISTORY_LENGTH)
    check_int("min_ratings_per_user", min_ratings_per_user)


def _check_world(world, history_length: int, user_features) -> None:
    if world is None:
        return
    if not hasattr(world, "fitted"):
        raise ValueError(
            f"world: expected a data-fitted env (FittedRatings, MovieLens100K), got "
            f"{type(world).__name__}"
        )
    if history_length != world.config.history_length:
        raise ValueError(
            f"history_length: expected the world's history_length "
            f"{world.config.history_length} (its observation holds that many items), got "
            f"{history_length}"
        )
    if user_features is not None:
        raise ValueError(
            "user_features: expected None with world= (the world's observation holds the "
            "user's fitted vector, not a features file)"
        )


def _source(path, ratings) -> dict:
    return {
        "path": str(Path(path).resolve()),
        "format": ratings.format,
        "rows_in_file": len(ratings),
        "has_timestamp": ratings.has_timestamp,
    }


def _reward_rule(ratings) -> str:
    low, high = ratings.rating_scale
    return f"(rating - {low:g}) / ({high:g} - {low:g})"


def _options(
    format, rating_scale, history_length, min_ratings_per_user, user_features, world=None
) -> dict:
    options = {
        "format": format,
        "rating_scale": [float(v) for v in rating_scale],
        "history_length": history_length,
        "min_ratings_per_user": min_ratings_per_user,
        # The file's content, not its path, identifies what was loaded.
        "user_features": None if user_features is None else file_sha256(user_features),
    }
    if world is not None:  # absent otherwise: folders written before world= still re-open
        # The world's full config: another fit or session length is another layout.
        options["world"] = world_description(world)
    return options

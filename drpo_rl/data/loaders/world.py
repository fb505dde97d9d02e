"""Ratings logs in the layout of the data-fitted env made from them: one layout per world.

A policy trained on logs can be evaluated in a simulator only if its observations there
read like the logged ones. :func:`world_logs` lays out the ratings of the file a
:class:`~envs.fitted.FittedRatings` env (e.g. :class:`~envs.fitted.MovieLens100K`) was
fitted to exactly as that env observes its users (``env.observation_layout``):

- ``preference``: the logged user's fitted vector (the env shows its users' vectors, plus
  their ``observation_noise`` view offset, drifting toward what they consume within a
  session; the log has neither noise nor drift: the fit is one vector per user);
- ``history_items`` and ``history_rewards``: the fitted embeddings and rewards of the
  session's K most recent items, newest first, zeros for empty slots;
- ``step``: the step in the session / ``max_length``.

Sessions are the env's: each user's ratings in time order are cut into consecutive
sessions of ``max_length`` ratings, each starting with an empty history, as a simulated
session does. A full session ends ``terminated`` (the env's users leave after
``max_length`` items); the user's last, shorter one ends ``truncated`` (the log stops).
The action is the env's: the item index of the fit (``action_type="item"``) or its fitted
embedding (``"embedding"``; ``("next", "item")`` keeps the index). Rows are split by time
(:mod:`~drpo_rl.data.loaders.splits`). The fitted vectors are
stored as the dataset's tables (``item_features.pt``, ``user_features.pt``), so that a
trained policy recommends without the env.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from drpo_rl.data.loaders.sequences import sequence_logs
from drpo_rl.data.loaders.splits import assign_splits, check_split, describe_splits, time_cutoffs

__all__ = ["world_description", "world_logs"]


def world_description(env) -> dict:
    """The env's name and resolved config, JSON-ready (what identifies its layout)."""
    config = {k: _plain(v) for k, v in dataclasses.asdict(env.config).items()}
    return {"env": type(env).__name__, "config": config}


def world_logs(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    reward: np.ndarray,
    timestamp: np.ndarray,
    env,
    *,
    source: str,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """``(data, metadata, tables)`` of ratings (raw ids as in the file, rewards in [0, 1])
    in the layout of ``env`` (a :class:`~envs.fitted.FittedRatings`).

    Raises:
        ValueError: a user or item id that ``env`` was not fitted on (naming it and
            ``source``), or an env that observes no history or step.
    """
    fit, config = env.fitted, env.config
    user = _indices(fit.user_ids.numpy(), user_ids, "user", source, env)
    item = _indices(fit.item_ids.numpy(), item_ids, "item", source, env)
    layout = env.observation_layout
    if set(layout) != {"preference", "history_items", "history_rewards", "step"}:
        raise ValueError(
            f"env: expected a session env observing history and step, got the layout "
            f"{sorted(layout)}"
        )
    length = config.max_length
    # Each user's ratings in time order (file order breaks ties), cut into sessions.
    order = np.lexsort((np.arange(len(user)), timestamp, user))
    first = np.r_[True, user[order][1:] != user[order][:-1]]
    starts = np.flatnonzero(first)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    session_sorted = np.cumsum(np.r_[True, first[1:] | (rank[1:] % length == 0)]) - 1
    session = np.empty_like(session_sorted)
    session[order] = session_sorted
    data, facts = sequence_logs(
        session,
        item,
        reward,
        timestamp,
        num_items=fit.num_items,
        history_length=config.history_length,
    )
    data["user"] = torch.from_numpy(user[facts["order"]])
    step = torch.from_numpy(rank % length)  # sequence_logs keeps the order computed here
    items, users = fit.items.to(torch.float32), fit.users.to(torch.float32)

    def observe(history, history_reward, steps):
        shown = items[history.clamp_min(0)].masked_fill((history < 0).unsqueeze(-1), 0.0)
        return torch.cat(
            [
                users[data["user"]],
                shown.flatten(1),
                history_reward,
                (steps.to(torch.float32) / length).unsqueeze(-1),
            ],
            dim=-1,
        )

    data["observation"] = observe(data["history"], data["history_reward"], step)
    data["next", "observation"] = observe(
        data["next", "history"], data["next", "history_reward"], step + 1
    )
    end = data["next", "done"].squeeze(-1)
    full = end & (step + 1 == length)
    data["next", "terminated"] = full.unsqueeze(-1)
    data["next", "truncated"] = (end & ~full).unsqueeze(-1)
    if config.action_type == "embedding":
        data["action"] = items[data["next", "item"]]
    times = data["timestamp"].numpy()
    cutoffs = time_cutoffs(times, check_split(split))
    data["split"] = torch.from_numpy(assign_splits(times, cutoffs))
    metadata = {
        "world": world_description(env),
        "observation_layout": [
            {"name": name, "columns": [part.start, part.stop], "meaning": _MEANING[name]}
            for name, part in layout.items()
        ],
        "max_steps": length,
        "num_items": fit.num_items,
        "num_users": fit.num_users,
        "num_sessions": int(session.max()) + 1,
        "splits": describe_splits(split, cutoffs, torch.bincount(data["split"], minlength=3)),
        "item_ids": fit.item_ids.tolist(),
        "user_ids": fit.user_ids.tolist(),
    }
    return data, metadata, {"item_embeddings": items, "users": users}


_MEANING = {
    "preference": "the user's fitted vector",
    "history_items": "fitted embeddings of the session's K most recent items, newest first",
    "history_rewards": "their rewards",
    "step": "step in the session / max_length",
}


def _indices(fitted: np.ndarray, raw: np.ndarray, kind: str, source: str, env) -> np.ndarray:
    position = np.searchsorted(fitted, raw).clip(max=len(fitted) - 1)
    unknown = fitted[position] != raw
    if unknown.any():
        raise ValueError(
            f"{source}: {kind} id {int(raw[np.argmax(unknown)])} is not among the "
            f"{len(fitted)} {kind}s {type(env).__name__} was fitted on "
            f"({env.config.ratings_path}); load the file the env was made from"
        )
    return position.astype(np.int64)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value

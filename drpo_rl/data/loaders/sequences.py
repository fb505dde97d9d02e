"""Per-user interaction sequences as offline logs: history windows, observations, ends.

The sequential loaders (MovieLens, KuaiRand, KuaiRec) hand their checked rows to
:func:`sequence_logs`, so that every one of them lays out its logs the same way:

- rows are ordered by user, then time, then line of the file (ties in time keep file order);
  each user's interactions are contiguous, one trajectory per user;
- ``"history"`` int64 [R, K]: the indices of the user's K previous items, most recent
  first, -1 for empty slots (K = ``history_length``), and ``"history_reward"`` float32
  [R, K] their rewards (0 for empty slots), as the session envs keep them;
- ``"observation"`` float32 [R, 2K + 1] (see :func:`observation_layout`):
  ``(history + 1) / N`` (0 for an empty slot, else in (0, 1]) | ``history_reward`` |
  ``step / max_steps``, where ``step`` is the number of the user's earlier interactions
  and ``max_steps`` the length of the longest user sequence of the file;
- ``("next", ...)``: the same after the interaction (the item and its reward enter the
  history); ``("next", "done")`` and ``("next", "truncated")`` are True on each user's last
  interaction: the log ends there, which says nothing of whether the user left, so
  ``("next", "terminated")`` is False throughout;
- ``"action"`` and ``("next", "item")`` int64 [R]: the item index; ``("next", "reward")``
  float32 [R, 1] in [0, 1]; ``("collector", "traj_ids")`` int64 [R]: the user index (the
  key that :class:`~torchrl.data.SliceSampler` reads for generated session logs too);
  ``"user"`` int64 [R] the user index; ``"timestamp"`` float64 [R], seconds since the
  epoch; ``"user_id"`` and ``"item_id"`` int64 [R], the ids as written in the file.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tensordict import TensorDict

from envs.common.checks import check_int
from envs.config import MAX_HISTORY_LENGTH

__all__ = ["keep_active_users", "observation_layout", "sequence_logs", "window_rows"]

log = logging.getLogger("drpo_rl.data.loaders")


def keep_active_users(
    user: np.ndarray, minimum: int, *, source: str, option: str
) -> tuple[np.ndarray, dict[str, int]]:
    """The row filter "at least ``minimum`` interactions per user", reported.

    Returns ``(keep, rows_removed)``: a bool mask of the rows kept, and
    ``{option: rows removed}`` (empty when ``minimum`` <= 1, where nothing is filtered).
    The count is also logged (logger ``drpo_rl.data.loaders``, level INFO).

    Raises:
        ValueError: the filter would remove every row.

    Examples:
        >>> keep, removed = keep_active_users(np.array([5, 5, 9]), 2, source="f", option="m")
        >>> keep.tolist(), removed
        ([True, True, False], {'m': 1})
    """
    if minimum <= 1:
        return np.ones(user.shape[0], dtype=bool), {}
    _, index, counts = np.unique(user, return_inverse=True, return_counts=True)
    keep = counts[index] >= minimum
    removed = int((~keep).sum())
    log.info(
        "%s: %s=%d removed %d of %d rows (%d of %d users)",
        source,
        option,
        minimum,
        removed,
        user.shape[0],
        int((counts < minimum).sum()),
        counts.shape[0],
    )
    if not keep.any():
        raise ValueError(
            f"{source}: {option}={minimum} removes every row (the most active user has "
            f"{int(counts.max())})"
        )
    return keep, {option: removed}


def observation_layout(history_length: int) -> list[dict]:
    """The columns of ``"observation"`` for sequence logs, as JSON-friendly records.

    Examples:
        >>> [part["name"] for part in observation_layout(3)]
        ['history_item', 'history_reward', 'step']
        >>> observation_layout(3)[1]["columns"]
        [3, 6]
    """
    k = history_length
    return [
        {
            "name": "history_item",
            "columns": [0, k],
            "meaning": "(index of the k-th most recent item + 1) / num_items; 0 if none",
        },
        {
            "name": "history_reward",
            "columns": [k, 2 * k],
            "meaning": "reward of the k-th most recent item; 0 if none",
        },
        {
            "name": "step",
            "columns": [2 * k, 2 * k + 1],
            "meaning": "earlier interactions of the user / max_steps",
        },
    ]


def sequence_logs(
    user: np.ndarray,
    item: np.ndarray,
    reward: np.ndarray,
    timestamp: np.ndarray,
    *,
    num_items: int,
    history_length: int,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> tuple[TensorDict, dict]:
    """Offline logs from per-interaction arrays (see the module docstring for the keys).

    Args:
        user: int64 [R], 0-based user indices.
        item: int64 [R], 0-based item indices (< ``num_items``).
        reward: [R], rewards already in [0, 1].
        timestamp: [R], seconds since the epoch (or any increasing clock).
        num_items: N, the number of distinct items (scales the history columns).
        history_length: K >= 0.
        user_ids, item_ids: the ids in the file (index -> id); when given, each row also
            gets ``"user_id"`` and ``"item_id"`` (int64 [R]), for joins with side files.

    Returns:
        ``(logs, facts)``: the TensorDict with batch ``[R]`` in (user, time, input order),
        and ``{"max_steps": ..., "order": int64 [R] input row of each log row}``.

    Examples:
        >>> import numpy as np
        >>> td, facts = sequence_logs(np.array([1, 0, 1]), np.array([2, 0, 1]),
        ...                           np.array([1.0, 0.5, 0.0]), np.array([20, 5, 10]),
        ...                           num_items=3, history_length=2)
        >>> td["user"].tolist(), td["action"].tolist(), facts["order"].tolist()
        ([0, 1, 1], [0, 1, 2], [1, 2, 0])
        >>> td["history"].tolist()  # user 1's second row has seen item 1
        [[-1, -1], [-1, -1], [1, -1]]
        >>> [round(v, 4) for v in td["observation"][2].tolist()]  # (1+1)/3, 0 | 0, 0 | 1/2
        [0.6667, 0.0, 0.0, 0.0, 0.5]
        >>> td["next", "done"].squeeze(-1).tolist()
        [True, False, True]
    """
    check_int("history_length", history_length, minimum=0, maximum=MAX_HISTORY_LENGTH)
    rows = user.shape[0]
    # lexsort: last key is primary; the input position breaks ties in time.
    order = np.lexsort((np.arange(rows), timestamp, user))
    user, item = user[order], item[order]
    reward = np.asarray(reward, dtype=np.float32)[order]
    timestamp = np.asarray(timestamp, dtype=np.float64)[order]
    first = np.ones(rows, dtype=bool)
    first[1:] = user[1:] != user[:-1]
    last = np.ones(rows, dtype=bool)
    last[:-1] = user[1:] != user[:-1]
    starts = np.flatnonzero(first)
    step = np.arange(rows) - np.repeat(starts, np.diff(np.append(starts, rows)))
    max_steps = int(step.max()) + 1

    k = history_length
    history = np.full((rows, k), -1, dtype=np.int64)
    history_reward = np.zeros((rows, k), dtype=np.float32)
    for slot in range(k):
        back = slot + 1
        seen = step >= back
        source = np.flatnonzero(seen) - back
        history[seen, slot] = item[source]
        history_reward[seen, slot] = reward[source]
    data = window_rows(
        item,
        reward,
        history,
        history_reward,
        step=step,
        end=last,
        user=user,
        trajectory=user,
        timestamp=timestamp,
        num_items=num_items,
        max_steps=max_steps,
    )
    if user_ids is not None:
        data["user_id"] = torch.from_numpy(np.asarray(user_ids, dtype=np.int64)[user])
    if item_ids is not None:
        data["item_id"] = torch.from_numpy(np.asarray(item_ids, dtype=np.int64)[item])
    return data, {"max_steps": max_steps, "order": order}


def window_rows(
    item: np.ndarray,
    reward: np.ndarray,
    history: np.ndarray,
    history_reward: np.ndarray,
    *,
    step: np.ndarray,
    end: np.ndarray,
    user: np.ndarray,
    trajectory: np.ndarray,
    timestamp: np.ndarray,
    num_items: int,
    max_steps: int,
    features: np.ndarray | None = None,
) -> TensorDict:
    """The logged rows of the module docstring from each row's item, reward, history window
    (``history`` [R, K], -1 for empty slots, newest first, and ``history_reward``), step in
    its trajectory, whether it ends the trajectory (``end``), user, trajectory and time.

    ``features`` (float32 [R, F], optional) continue the observation (the user's features).

    Example:
        >>> td = window_rows(np.array([2]), np.array([1.0]), np.array([[0, -1]]),
        ...                  np.array([[0.5, 0.0]]), step=np.array([1]), end=np.array([True]),
        ...                  user=np.array([0]), trajectory=np.array([0]),
        ...                  timestamp=np.array([7.0]), num_items=4, max_steps=2)
        >>> td["observation"].tolist(), td["next", "history"].tolist()
        ([[0.25, 0.0, 0.5, 0.0, 0.5]], [[2, 0]])
    """
    reward = np.asarray(reward, dtype=np.float32)
    history_reward = np.asarray(history_reward, dtype=np.float32)
    k = history.shape[1]
    next_history = np.concatenate([item[:, None], history[:, : k - 1]], axis=1)[:, :k]
    next_reward = np.concatenate([reward[:, None], history_reward[:, : k - 1]], axis=1)[:, :k]

    def observe(hist: np.ndarray, hist_reward: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        parts = [
            (hist + 1).astype(np.float32) / np.float32(num_items),
            hist_reward,
            (steps.astype(np.float32) / np.float32(max_steps))[:, None],
        ]
        if features is not None:
            parts.append(np.asarray(features, dtype=np.float32))
        return torch.from_numpy(np.concatenate(parts, axis=1))

    action = torch.from_numpy(np.array(item, dtype=np.int64))
    done = torch.from_numpy(np.array(end, dtype=bool)).unsqueeze(-1)
    return TensorDict(
        {
            "observation": observe(history, history_reward, step),
            "history": torch.from_numpy(np.array(history, dtype=np.int64)),
            "history_reward": torch.from_numpy(history_reward.copy()),
            "action": action,
            "user": torch.from_numpy(np.array(user, dtype=np.int64)),
            "timestamp": torch.from_numpy(np.array(timestamp, dtype=np.float64)),
            ("collector", "traj_ids"): torch.from_numpy(np.array(trajectory, dtype=np.int64)),
            ("next", "observation"): observe(next_history, next_reward, step + 1),
            ("next", "history"): torch.from_numpy(np.ascontiguousarray(next_history)),
            ("next", "history_reward"): torch.from_numpy(np.ascontiguousarray(next_reward)),
            ("next", "reward"): torch.from_numpy(reward.copy()).unsqueeze(-1),
            ("next", "item"): action.clone(),
            ("next", "done"): done,
            ("next", "truncated"): done.clone(),
            ("next", "terminated"): torch.zeros_like(done),
        },
        batch_size=[len(item)],
    )

"""Logged interactions as off-policy evaluation reads them: sessions ``[S, L]``, checked.

Every estimator works on one layout: ``S`` sessions of at most ``L`` steps, padded, with a
``mask`` of the real steps. Horizon-1 logs (the bandits, OBD) are ``S`` sessions of one step.
Session logs (``drpo_rl.data.generate_logs`` on a session env: ``[env, time]`` rows with
``("collector", "traj_ids")``) are cut into their sessions; a session the log stream stopped
before it ended (no ``done`` at its last step) has no return to compare with, and is left
out and counted in ``dropped_sessions`` (the caller warns).

The behaviour's propensity is the probability of the logged *item*:
``exp(behavior_log_prob)``. For item-id actions that is what the logs carry. For embedding
actions it is so only when each logged action is exactly its item's embedding
(``action_noise == 0``, checked against the catalogue); with ``action_noise > 0`` the logs
carry a density over embeddings, not an item probability, and are refused.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> rows = TensorDict({"observation": torch.zeros(3, 2), "action": torch.tensor([0, 1, 1]),
    ...                    "behavior_log_prob": torch.tensor([0.5, 0.5, 0.25]).log(),
    ...                    ("next", "reward"): torch.tensor([[1.0], [0.0], [1.0]])}, [3])
    >>> logged = read_logs(rows, num_items=2)
    >>> logged.item.shape, logged.propensity[:, 0].float().tolist()
    (torch.Size([3, 1]), [0.5, 0.5, 0.25])
    >>> rows["behavior_log_prob"][2] = 0.1  # log p > 0: p > 1
    >>> read_logs(rows, num_items=2)
    Traceback (most recent call last):
    ...
    ValueError: logs['behavior_log_prob']: expected ... got p = 1.105 (p > 1) at row 2 (1 such row)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY, STEP_KEY, TRAJ_KEY

REWARD_KEY = ("next", "reward")
DONE_KEY = ("next", "done")
TERMINATED_KEY = ("next", "terminated")
ITEM_KEY = ("next", "item")
# Largest difference between a logged embedding action and its item's embedding that still
# counts as "the action is the item's embedding" (float32 round-off of a copy is 0).
EMBEDDING_TOLERANCE = 1e-5


@dataclass
class LoggedSessions:
    """Checked logs: ``S`` sessions of at most ``L`` steps (``L == 1`` for horizon-1 logs).

    Attributes:
        rows: the logged rows ``[S, L]`` (padding rows copy a real row; ``mask`` marks them).
        item: int64 ``[S, L]``, the logged item ids.
        reward: float64 ``[S, L]`` (0 at padding).
        propensity: float64 ``[S, L]``, the behaviour's probability of the logged item (1 at
            padding, so that products of weights run on unchanged).
        mask: bool ``[S, L]``, the real steps.
        num_items: catalogue size the item ids index.
        dropped_sessions: sessions left out because the log stream stopped inside them.
        fingerprint: a digest of the logged items and rewards, to tell these logs apart.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> streams = TensorDict({  # one user stream [env=1, time=3]: sessions 7 and 8
        ...     "observation": torch.zeros(1, 3, 2), "action": torch.tensor([[0, 1, 1]]),
        ...     "behavior_log_prob": torch.zeros(1, 3), ("collector", "traj_ids"):
        ...     torch.tensor([[7, 7, 8]]), ("next", "reward"): torch.ones(1, 3, 1),
        ...     ("next", "done"): torch.tensor([[[False], [True], [False]]])}, [1, 3])
        >>> logged = read_logs(streams, num_items=2)  # session 8 never ended: left out
        >>> logged.mask.tolist(), logged.dropped_sessions, logged.horizon
        ([[True, True]], 1, 2)
    """

    rows: TensorDictBase
    item: torch.Tensor
    reward: torch.Tensor
    propensity: torch.Tensor
    mask: torch.Tensor
    num_items: int
    dropped_sessions: int
    fingerprint: str

    @property
    def horizon(self) -> int:
        return int(self.item.shape[1])

    @property
    def num_sessions(self) -> int:
        return int(self.item.shape[0])


def read_logs(
    rows: TensorDictBase,
    *,
    num_items: int,
    embeddings: torch.Tensor | None = None,
    propensity_key: str = BEHAVIOR_LOG_PROB_KEY,
    log_propensity: bool = True,
    session_cap: int | None = None,
) -> LoggedSessions:
    """Check ``rows`` (``[R]`` interactions or ``[env, time]`` session streams) and lay them
    out as sessions; ``embeddings`` (``[N, d]``) is needed for embedding actions.

    A session the log stream stopped inside is left out (counted in ``dropped_sessions``):
    one whose last row is the last of its stream and did not end by the user leaving
    (``terminated``) nor, when ``session_cap`` (the env's ``max_length``) is known and the
    rows carry their ``step_count``, by reaching the cap.

    ``propensity_key`` holds log-propensities (``log_propensity=True``, the suite's
    ``behavior_log_prob``) or plain probabilities; either must give probabilities in
    ``(0, 1]``: a zero, negative, NaN or > 1 value is refused naming its row.
    """
    present = rows.keys(True, True)
    if propensity_key not in present:
        raise ValueError(
            f"logs: expected the key {propensity_key!r} (the behaviour's propensity of each "
            f"logged action), missing; the logs have {sorted(map(str, present))}"
        )
    if REWARD_KEY not in present:
        raise ValueError(f"logs: expected the key {REWARD_KEY!r}, missing")
    if rows.batch_dims == 2:
        if TRAJ_KEY not in rows.keys(True, True):
            raise ValueError(
                f"logs: rows of shape {tuple(rows.shape)} are session streams and need "
                f"{TRAJ_KEY!r} to be cut into sessions, missing"
            )
        rows, dropped = _sessions(rows, session_cap)
    elif rows.batch_dims == 1:
        rows, dropped = rows.unsqueeze(1), 0
    else:
        raise ValueError(
            f"logs: expected rows [R] or session streams [env, time], got shape {tuple(rows.shape)}"
        )
    mask = rows.get("_mask", None)
    if mask is None:
        mask = torch.ones(rows.shape, dtype=torch.bool, device=rows.device)
    else:
        rows = rows.exclude("_mask")
    item = _items(rows, num_items, embeddings, mask)
    probability = _propensity(rows.get(propensity_key), propensity_key, log_propensity, mask)
    reward = rows.get(REWARD_KEY).reshape(rows.shape).to(torch.float64)
    if not torch.isfinite(reward[mask]).all():
        bad = _first(~torch.isfinite(reward) & mask)
        raise ValueError(f"logs[{REWARD_KEY!r}]: expected finite rewards, got NaN/inf at {bad}")
    return LoggedSessions(
        rows=rows,
        item=item,
        reward=torch.where(mask, reward, 0.0),
        propensity=torch.where(mask, probability, 1.0),
        mask=mask,
        num_items=num_items,
        dropped_sessions=dropped,
        fingerprint=fingerprint(item, reward, mask),
    )


def _contiguous(traj: torch.Tensor) -> bool:
    return len(torch.unique_consecutive(traj)) == len(torch.unique(traj))


def fingerprint(item: torch.Tensor, reward: torch.Tensor, mask: torch.Tensor) -> str:
    """A short digest of the logged items and rewards (what a reward model was fitted to)."""
    digest = hashlib.sha256()
    digest.update(item[mask].cpu().numpy().tobytes())
    digest.update(reward[mask].to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _first(bad: torch.Tensor) -> str:
    """``row i`` (or ``session s, step t``) of the first True of ``bad`` ``[S, L]``, and how
    many there are."""
    where = torch.nonzero(bad)[0].tolist()
    place = f"row {where[0]}" if bad.shape[1] == 1 else f"session {where[0]}, step {where[1]}"
    count = int(bad.sum())
    return f"{place} ({count} such row{'s' if count != 1 else ''})"


def _propensity(value: torch.Tensor, key: str, is_log: bool, mask: torch.Tensor) -> torch.Tensor:
    value = value.reshape(mask.shape).to(torch.float64)
    probability = value.exp() if is_log else value
    what = "log-propensities of probabilities" if is_log else "probabilities"
    for bad, problem in (
        (torch.isnan(value), "NaN"),
        (probability <= 0, "p <= 0"),
        (probability > 1 + 1e-6, "p > 1"),
    ):
        bad = bad & mask
        if bad.any():
            first = probability[tuple(torch.nonzero(bad)[0].tolist())].item()
            raise ValueError(
                f"logs[{key!r}]: expected {what} in (0, 1], got p = {first:.4g} ({problem}) at "
                f"{_first(bad)}"
            )
    return probability.clamp(max=1.0)


def _items(
    rows: TensorDictBase, num_items: int, embeddings: torch.Tensor | None, mask: torch.Tensor
) -> torch.Tensor:
    action = rows.get("action")
    if not action.is_floating_point():
        item = action.reshape(mask.shape).long()
    else:
        if embeddings is None or ITEM_KEY not in rows.keys(True, True):
            raise ValueError(
                "logs: the logged actions are embeddings; item-level evaluation needs the "
                "catalogue (pass env=) and the logged item ('next', 'item')"
            )
        item = rows.get(ITEM_KEY).reshape(mask.shape).long()
        _check_range(item, num_items, mask)
        gap = (action - embeddings.to(action.device)[item]).abs().amax(-1)
        off = (gap > EMBEDDING_TOLERANCE) & mask
        if off.any():
            raise ValueError(
                "logs: the logged embedding actions are not their items' embeddings (largest "
                f"difference {gap[mask].max().item():.3g} at {_first(off)}): "
                "they were logged with action_noise > 0, so 'behavior_log_prob' is a density "
                "over embeddings, not the probability of the item, and item-level importance "
                "weights cannot be formed; log with action_noise=0 to evaluate off-policy"
            )
    _check_range(item, num_items, mask)
    return item


def _check_range(item: torch.Tensor, num_items: int, mask: torch.Tensor) -> None:
    bad = ((item < 0) | (item >= num_items)) & mask
    if bad.any():
        value = item[tuple(torch.nonzero(bad)[0].tolist())].item()
        raise ValueError(
            f"logs: expected item ids in [0, {num_items}) (the policy's action space), got "
            f"{value} at {_first(bad)}: the logs come from another catalogue"
        )


def _sessions(rows: TensorDictBase, session_cap: int | None) -> tuple[TensorDictBase, int]:
    """``[env, time]`` streams cut into padded sessions ``[S, L]`` (+ ``"_mask"``)."""
    if not _contiguous(rows.reshape(-1).get(TRAJ_KEY).reshape(-1)):
        # [time, env] streams: each session's steps are contiguous along the other dim.
        rows = rows.transpose(0, 1)
        if not _contiguous(rows.reshape(-1).get(TRAJ_KEY).reshape(-1)):
            raise ValueError(
                f"logs[{TRAJ_KEY!r}]: expected each session's steps contiguous in time, got "
                "ids that recur after other ids"
            )
    flat = rows.reshape(-1)
    traj = flat.get(TRAJ_KEY).reshape(-1)
    done = flat.get(DONE_KEY).reshape(-1).bool()
    # The logging window marks the sessions it cuts truncated (done): they are not over.
    stream_end = torch.zeros(rows.shape, dtype=torch.bool, device=traj.device)
    stream_end[:, -1] = True
    # (Logs without "terminated" end sessions by "done" alone.)
    terminated = flat.get(TERMINATED_KEY, default=None)
    terminated = done if terminated is None else terminated.reshape(-1).bool()
    cut = stream_end.reshape(-1) & ~terminated
    if session_cap is not None and STEP_KEY in flat.keys():
        cut &= flat.get(STEP_KEY).reshape(-1) + 1 < session_cap
    _, counts = torch.unique_consecutive(traj, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    last = starts + counts - 1
    complete = done[last] & ~cut[last]
    starts, counts = starts[complete], counts[complete]
    length = int(counts.max()) if len(counts) else 0
    if length == 0:
        raise ValueError("logs: no complete session (none ends with ('next', 'done'))")
    steps = torch.arange(length, device=traj.device)
    index = starts[:, None] + steps[None, :]
    mask = steps[None, :] < counts[:, None]
    # Padding repeats the session's last row, so every tensor stays valid input.
    index = torch.where(mask, index, (starts + counts - 1)[:, None])
    sessions = flat[index.reshape(-1)].reshape(index.shape)
    sessions.set("_mask", mask)
    return sessions, int((~complete).sum())

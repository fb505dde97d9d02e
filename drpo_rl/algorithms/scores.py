"""What a filter or an advantage ranks logged rows by: the ``score`` option of the weighted
family (DRPO, DRPO-Exp, AdaptBC, APG, AWR, CRR, AsymRe).

- ``"reward"``: the immediate reward ``("next", "reward")``, the paper's bandit score;
- ``"return_to_go"``: the discounted return from the row to its session's end, stored in
  session logs when they are written (:data:`~drpo_rl.data.layout.RETURN_TO_GO_KEY`);
  the default on session logs (docs/method.md, "Sessions");
- ``"td"`` (APG, AWR, CRR, AsymRe with their learned ``V``): with ``lmbda=0`` (the default)
  the TD(0) target ``r + gamma (1 - terminated) V(s')`` (TorchRL's ``td0_return_estimate``),
  so that the advantage is the one-step TD error. Only leaving (``terminated``) stops the
  bootstrap: a session cut by its length cap or the logging window (``truncated``) goes on.

  With ``0 < lmbda <= 1`` it is the TD(lambda) return (TorchRL's
  ``vec_td_lambda_return_estimate``, the one its ``TDLambdaEstimator`` runs; its exact loop
  ``td_lambda_return_estimate`` when ``gamma * lmbda`` is below 1e-7)
  ``G_t = r_t + gamma ((1 - lmbda) V(s_{t+1}) + lmbda G_{t+1})`` over the *segments* of the
  batch (:func:`segment_ends`): runs of rows, in batch order, that are consecutive steps of
  one session. A segment's last row bootstraps, ``G_t = r_t + gamma V(s_{t+1})``, unless it
  is ``terminated`` (``G_t = r_t``): TorchRL's ``done`` is the segment end, its
  ``terminated`` the logged one. Random rows are segments of one row each, so they get the
  TD(0) target; a ``SliceSampler`` slice gets the lambda-return within the slice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives.value.functional import (
    td0_return_estimate,
    td_lambda_return_estimate,
    vec_td_lambda_return_estimate,
)

from drpo_rl.data.layout import RETURN_TO_GO_KEY, STEP_KEY, TRAJ_KEY
from envs.common.checks import check_choice, check_number

__all__ = ["SCORES", "TD_SCORE_KEY", "check_td_lambda", "score_key", "segment_ends", "td_scored"]

# TorchRL's vectorised TD(lambda) drops the terms whose weight (gamma lmbda)^k is below
# 1e-7, and fails when gamma lmbda itself is: there its exact step-by-step loop is used.
_VECTORISED_MIN_DECAY = 1e-7

#: The score names and the logged key each reads (``"td"``: the key it is written to).
TD_SCORE_KEY = "td_score"
SCORES: dict[str, NestedKey] = {
    "reward": ("next", "reward"),
    "return_to_go": RETURN_TO_GO_KEY,
    "td": TD_SCORE_KEY,
}


def score_key(score: str, *, allowed: tuple[str, ...] = tuple(SCORES)) -> NestedKey:
    """The batch key the score ``score`` is read from (``ValueError`` unless ``allowed``).

    Example:
        >>> score_key("return_to_go"), score_key("reward")
        ('return_to_go', ('next', 'reward'))
        >>> score_key("td", allowed=("reward", "return_to_go"))
        Traceback (most recent call last):
        ...
        ValueError: score: expected one of ['reward', 'return_to_go'], got 'td'
    """
    check_choice("score", score, allowed)
    return SCORES[score]


def check_td_lambda(score: str, lmbda: float) -> float:
    """``lmbda`` if it is a TD(lambda) weight in [0, 1] that ``score`` uses (only ``"td"``
    reads it: any other score with ``lmbda > 0`` is refused, not silently ignored).

    Example:
        >>> check_td_lambda("td", 0.9)
        0.9
        >>> check_td_lambda("return_to_go", 0.9)
        Traceback (most recent call last):
        ...
        ValueError: lmbda: only score='td' uses it (the TD(lambda) target), got lmbda=0.9 ...
    """
    check_number("lmbda", lmbda, minimum=0, maximum=1)
    if lmbda and score != "td":
        raise ValueError(
            f"lmbda: only score='td' uses it (the TD(lambda) target), got lmbda={lmbda} with "
            f"score={score!r}; set score='td' or lmbda=0"
        )
    return lmbda


def segment_ends(batch: TensorDictBase) -> torch.Tensor:
    """Which rows of ``batch`` (flattened in batch order) end a segment, bool ``[numel]``.

    A segment is a maximal run of rows that are consecutive steps of one session: the next
    row has the same :data:`~drpo_rl.data.layout.TRAJ_KEY` and a
    :data:`~drpo_rl.data.layout.STEP_KEY` one higher. The last row always ends one, and
    rows without either key (bandit logs) are segments of their own.

    Example:
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({("collector", "traj_ids"): torch.tensor([7, 7, 7, 3, 3, 3]),
        ...                    "step_count": torch.tensor([[0], [1], [3], [4], [5], [6]])}, [6])
        >>> segment_ends(rows).tolist()  # a gap in steps and a new session end segments
        [False, True, True, False, False, True]
    """
    count = batch.numel()
    keys = batch.keys(True)
    present = [key for key in (TRAJ_KEY, STEP_KEY) if key in keys]
    if not present:
        return torch.ones(count, dtype=torch.bool, device=batch.device)
    if len(present) == 1:
        missing = STEP_KEY if present[0] == TRAJ_KEY else TRAJ_KEY
        raise ValueError(
            f"td_score: the batch holds {present[0]!r} but not {missing!r}; TD(lambda) needs "
            "both to tell consecutive steps of one session (or neither: rows of their own)"
        )
    traj, step = (_per_row(batch, key) for key in (TRAJ_KEY, STEP_KEY))
    ends = torch.ones(count, dtype=torch.bool, device=traj.device)
    ends[:-1] = (traj[1:] != traj[:-1]) | (step[1:] != step[:-1] + 1)
    return ends


def _per_row(batch: TensorDictBase, key: NestedKey) -> torch.Tensor:
    value = batch[key]
    if value.numel() != batch.numel():
        raise ValueError(
            f"{key!r}: expected one value per row of the batch (shape {list(batch.shape)}), "
            f"got shape {list(value.shape)}"
        )
    return value.reshape(-1)


def td_scored(
    state_value: Callable[[TensorDictBase], torch.Tensor], gamma: float, lmbda: float = 0.0
) -> Callable[[TensorDictBase], TensorDictBase]:
    """A batch -> batch function adding the TD(``lmbda``) target :data:`TD_SCORE_KEY`, ``[*B, 1]``.

    ``state_value(td)`` gives ``V`` of ``td["observation"]``; it is called on the batch's
    ``"next"`` entries without gradient. The batch must hold ``("next", "observation")``
    and ``("next", "terminated")`` (see
    :func:`~drpo_rl.algorithms.transitions.complete_terminal_transitions`); with
    ``lmbda > 0`` its segments are read from :func:`segment_ends`.

    Example:
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({
        ...     ("next", "observation"): torch.zeros(2, 3),
        ...     ("next", "reward"): torch.ones(2, 1),
        ...     ("next", "terminated"): torch.tensor([[True], [False]]),  # left / cut
        ...     ("next", "truncated"): torch.tensor([[False], [True]])}, [2])
        >>> scored = td_scored(lambda td: torch.full((2, 1), 2.0), gamma=0.5)(batch)
        >>> scored["td_score"][:, 0].tolist()  # the truncated row bootstraps
        [1.0, 2.0]

        Two steps of one session that the user left: with ``lmbda=1`` the first row's
        target is the discounted return ``1 + 0.5 * 1``, whatever ``V`` says.

        >>> batch = TensorDict({
        ...     ("next", "observation"): torch.zeros(2, 3),
        ...     ("next", "reward"): torch.ones(2, 1),
        ...     ("next", "terminated"): torch.tensor([[False], [True]]),
        ...     ("collector", "traj_ids"): torch.tensor([4, 4]),
        ...     "step_count": torch.tensor([[0], [1]])}, [2])
        >>> scored = td_scored(lambda td: torch.full((2, 1), 2.0), gamma=0.5, lmbda=1.0)(batch)
        >>> scored["td_score"][:, 0].tolist()
        [1.5, 1.0]
    """
    check_number("lmbda", lmbda, minimum=0, maximum=1)
    vectorised = gamma * lmbda >= _VECTORISED_MIN_DECAY
    estimate = vec_td_lambda_return_estimate if vectorised else td_lambda_return_estimate

    def score(batch: TensorDictBase) -> TensorDictBase:
        reward, terminated = batch["next", "reward"], batch["next", "terminated"]
        with torch.no_grad():
            next_value = state_value(batch["next"]).reshape(reward.shape)
        out = batch.copy()
        if lmbda == 0:
            out[TD_SCORE_KEY] = td0_return_estimate(
                gamma, next_value, reward, terminated=terminated
            )
            return out
        # TorchRL's time dimension is the flattened batch: [numel, 1].
        terminated = terminated.reshape(-1, 1)
        done = segment_ends(batch).unsqueeze(-1) | terminated
        returns = estimate(
            gamma, lmbda, next_value.reshape(-1, 1), reward.reshape(-1, 1), done, terminated
        )
        out[TD_SCORE_KEY] = returns.reshape(reward.shape)
        return out

    return score

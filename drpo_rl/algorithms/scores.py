"""What a filter or an advantage ranks logged rows by: the ``score`` option of the weighted
family (DRPO, DRPO-Exp, AdaptBC, APG, AWR, CRR, AsymRe).

- ``"reward"``: the immediate reward ``("next", "reward")``, the paper's bandit score;
- ``"return_to_go"``: the discounted return from the row to its session's end, stored in
  session logs when they are written (:data:`~drpo_rl.data.layout.RETURN_TO_GO_KEY`);
  the default on session logs (docs/method.md, "Sessions");
- ``"td"`` (APG, AWR, CRR, AsymRe with their learned ``V``): the TD(0) target
  ``r + gamma (1 - terminated) V(s')`` (TorchRL's ``td0_return_estimate``), so that the
  advantage is the one-step TD error. Only leaving (``terminated``) stops the bootstrap:
  a session cut by its length cap or the logging window (``truncated``) goes on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives.value.functional import td0_return_estimate

from drpo_rl.data.layout import RETURN_TO_GO_KEY
from envs.common.checks import check_choice

__all__ = ["SCORES", "TD_SCORE_KEY", "score_key", "td_scored"]

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


def td_scored(
    state_value: Callable[[TensorDictBase], torch.Tensor], gamma: float
) -> Callable[[TensorDictBase], TensorDictBase]:
    """A batch -> batch function adding the TD(0) target :data:`TD_SCORE_KEY`, ``[*B, 1]``.

    ``state_value(td)`` gives ``V`` of ``td["observation"]``; it is called on the batch's
    ``"next"`` entries without gradient. The batch must hold ``("next", "observation")``
    and ``("next", "terminated")`` (see
    :func:`~drpo_rl.algorithms.transitions.complete_terminal_transitions`).

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
    """

    def score(batch: TensorDictBase) -> TensorDictBase:
        with torch.no_grad():
            next_value = state_value(batch["next"]).reshape(batch["next", "reward"].shape)
        out = batch.copy()
        out[TD_SCORE_KEY] = td0_return_estimate(
            gamma, next_value, batch["next", "reward"], terminated=batch["next", "terminated"]
        )
        return out

    return score

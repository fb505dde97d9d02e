"""CRR: critic-regularized regression (Wang et al., 2020) on logged data."""

from __future__ import annotations

from typing import Literal

import torch
from tensordict.nn import TensorDictModule

from drpo_rl.objectives.advantage import (
    AdvantageWeightedLoss,
    check_exp_weight_options,
    exp_advantage_weights,
)
from envs.common.checks import check_choice

__all__ = ["CRRLoss"]


class CRRLoss(AdvantageWeightedLoss):
    """``-mean(f(A) * log pi(a|s))`` with CRR's filter ``f``.

    ``form="exp"``: ``f(A) = min(exp(A / beta), max_weight)``; ``form="binary"``:
    ``f(A) = 1[A > 0]`` (behaviour cloning of the better-than-baseline samples; ``beta`` is
    unused). The advantage is ``Q(s, a) - V(s)`` when a ``critic_network`` (``Q``, trained
    elsewhere) is given, else ``reward - V(s)``, which is the same quantity in a bandit,
    where ``Q(s, a)`` is the expected reward.

    Args:
        actor_network, value_network: see :class:`AdvantageWeightedLoss`.

    Keyword Args:
        beta (float): temperature of the exp form, > 0 (paper grid: 0.5, 1, 5). Default 1.
        form (str): ``"exp"`` (default) or ``"binary"``.
        max_weight (float): cap of the exp form (CRR's 20). Defaults to 20.
        separate_losses, critic_network, reduction: see :class:`AdvantageWeightedLoss`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.models import PolicySpecs, make_categorical_actor
        >>> actor = make_categorical_actor(PolicySpecs(obs_dim=4, num_items=5))
        >>> data = TensorDict({
        ...     "observation": torch.randn(3, 4), "action": torch.tensor([0, 1, 2]),
        ...     ("next", "reward"): torch.tensor([[0.0], [0.4], [1.1]])}, [3])
        >>> CRRLoss(actor, form="binary").weights(data)  # baseline: batch mean 0.5
        tensor([0., 0., 1.])
    """

    def __init__(
        self,
        actor_network: TensorDictModule,
        value_network: TensorDictModule | None = None,
        *,
        beta: float = 1.0,
        form: Literal["exp", "binary"] = "exp",
        max_weight: float = 20.0,
        separate_losses: bool = True,
        critic_network: TensorDictModule | None = None,
        reduction: str | None = None,
    ) -> None:
        check_choice("form", form, ("exp", "binary"))
        check_exp_weight_options(beta, max_weight)
        super().__init__(
            actor_network,
            value_network,
            separate_losses=separate_losses,
            critic_network=critic_network,
            reduction=reduction,
        )
        self.form = form
        self.beta = float(beta)
        self.max_weight = float(max_weight)

    def _advantage_weights(self, advantage: torch.Tensor) -> torch.Tensor:
        if self.form == "binary":
            return (advantage > 0).to(advantage.dtype)
        return exp_advantage_weights(advantage, self.beta, self.max_weight)

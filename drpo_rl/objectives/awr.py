"""AWR: advantage-weighted regression (Peng et al., 2019) on logged data."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule

from drpo_rl.objectives.advantage import (
    AdvantageWeightedLoss,
    check_exp_weight_options,
    exp_advantage_weights,
)

__all__ = ["AWRLoss"]


class AWRLoss(AdvantageWeightedLoss):
    """``-mean(min(exp(A / beta), max_weight) * log pi(a|s))``, ``A = score - V(s)``.

    Every weight is positive (no repulsion); a small ``beta`` concentrates the weight on
    the best samples, the cap keeps one lucky sample from dominating a batch.

    Args:
        actor_network, value_network: see :class:`AdvantageWeightedLoss`.

    Keyword Args:
        beta (float): temperature, > 0 (paper grid: 0.05, 0.1, 1). Defaults to 0.1.
        max_weight (float): weight cap, > 0 (AWR's 20). Defaults to 20.
        separate_losses, critic_network, reduction: see :class:`AdvantageWeightedLoss`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.models import PolicySpecs, make_categorical_actor
        >>> loss = AWRLoss(make_categorical_actor(PolicySpecs(obs_dim=4, num_items=5)), beta=1.0)
        >>> data = TensorDict({
        ...     "observation": torch.randn(3, 4), "action": torch.tensor([0, 1, 2]),
        ...     ("next", "reward"): torch.tensor([[0.0], [0.5], [1.0]])}, [3])
        >>> loss.weights(data)  # batch-mean baseline 0.5: exp(-0.5), exp(0), exp(0.5)
        tensor([0.6065, 1.0000, 1.6487])
    """

    def __init__(
        self,
        actor_network: TensorDictModule,
        value_network: TensorDictModule | None = None,
        *,
        beta: float = 0.1,
        max_weight: float = 20.0,
        separate_losses: bool = True,
        critic_network: TensorDictModule | None = None,
        reduction: str | None = None,
    ) -> None:
        check_exp_weight_options(beta, max_weight)
        super().__init__(
            actor_network,
            value_network,
            separate_losses=separate_losses,
            critic_network=critic_network,
            reduction=reduction,
        )
        self.beta = float(beta)
        self.max_weight = float(max_weight)

    def _advantage_weights(self, advantage: torch.Tensor) -> torch.Tensor:
        return exp_advantage_weights(advantage, self.beta, self.max_weight)

"""AsymRe: asymmetric REINFORCE, negative advantages down-weighted by a fixed factor."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule

from drpo_rl.objectives.advantage import AdvantageWeightedLoss
from envs.common.checks import check_number

__all__ = ["AsymReLoss"]


class AsymReLoss(AdvantageWeightedLoss):
    """``-mean(w * log pi(a|s))`` with ``w = A`` if ``A >= 0`` else ``negative_scale * A``.

    Softens APG's repulsion without removing it (paper: ``negative_scale = 0.1``).

    Args:
        actor_network, value_network: see :class:`AdvantageWeightedLoss`.

    Keyword Args:
        negative_scale (float): factor on negative advantages, in ``[0, 1]``. Default 0.1.
        separate_losses, critic_network, reduction: see :class:`AdvantageWeightedLoss`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.models import PolicySpecs, make_categorical_actor
        >>> actor = make_categorical_actor(PolicySpecs(obs_dim=4, num_items=5))
        >>> data = TensorDict({
        ...     "observation": torch.randn(3, 4), "action": torch.tensor([0, 1, 2]),
        ...     ("next", "reward"): torch.tensor([[0.0], [0.5], [1.0]])}, [3])
        >>> AsymReLoss(actor).weights(data)  # batch-mean baseline 0.5
        tensor([-0.0500,  0.0000,  0.5000])
    """

    def __init__(
        self,
        actor_network: TensorDictModule,
        value_network: TensorDictModule | None = None,
        *,
        negative_scale: float = 0.1,
        separate_losses: bool = True,
        critic_network: TensorDictModule | None = None,
        reduction: str | None = None,
    ) -> None:
        check_number("negative_scale", negative_scale, minimum=0, maximum=1)
        super().__init__(
            actor_network,
            value_network,
            separate_losses=separate_losses,
            critic_network=critic_network,
            reduction=reduction,
        )
        self.negative_scale = float(negative_scale)

    def _advantage_weights(self, advantage: torch.Tensor) -> torch.Tensor:
        return torch.where(advantage >= 0, advantage, self.negative_scale * advantage)

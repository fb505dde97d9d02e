"""APG: plain advantage policy gradient on logged data, the paper's repulsive reference."""

from __future__ import annotations

import torch

from drpo_rl.objectives.advantage import AdvantageWeightedLoss

__all__ = ["APGLoss"]


class APGLoss(AdvantageWeightedLoss):
    """``-mean(A * log pi(a|s))``, ``A = score - b(s)``: the weights are the raw advantages.

    Samples with ``A < 0`` get negative weight: the update pushes probability mass away
    from those logged actions, with nothing to stop it off-policy (the "curse of repulsion",
    docs/method.md, "The curse of repulsion"). Kept exactly as the failure it is meant to show; see
    :class:`AdvantageWeightedLoss` for the baseline ``b(s)`` and the keys.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.models import PolicySpecs, make_gaussian_actor, make_value_critic
        >>> specs = PolicySpecs(obs_dim=4, action_dim=2)
        >>> loss = APGLoss(make_gaussian_actor(specs), make_value_critic(specs))
        >>> data = TensorDict({
        ...     "observation": torch.randn(6, 4), "action": torch.randn(6, 2),
        ...     ("next", "reward"): torch.rand(6, 1)}, [6])
        >>> out = loss(data)
        >>> sorted(out.keys())  # doctest: +NORMALIZE_WHITESPACE
        ['advantage_mean', 'advantage_std', 'ess', 'loss_objective', 'loss_value',
         'negative_advantage_fraction']
        >>> torch.equal(loss.weights(data), loss.advantage(data))
        True
    """

    def _advantage_weights(self, advantage: torch.Tensor) -> torch.Tensor:
        return advantage

"""Advantage-weighted log-likelihood: the base of APG, AWR, CRR and AsymRe.

These baselines weight ``log pi(a|s)`` by a function of the advantage
``A = score - b(s)`` (score = the logged reward, or a critic's ``Q(s, a)``). The rule that
turns a score into an advantage lives here, once; each baseline only says how an advantage
becomes a weight (:meth:`AdvantageWeightedLoss._advantage_weights`).

Baseline ``b(s)`` (our choice, the same for every baseline so that they differ only in the
weight rule): a learned ``V(s)`` when a ``value_network`` is given, trained inside the loss
by regression onto the score (mean squared error, reported as ``loss_value``; in a bandit
with reward scores it estimates the behaviour policy's expected reward in state ``s``).
Without a value network the baseline is the batch mean of the score (a state-independent
baseline, no extra parameters).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from tensordict import TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule, dispatch
from tensordict.utils import NestedKey

from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, valid_mean, valid_std
from envs.common.checks import check_number

__all__ = ["AdvantageWeightedLoss", "check_exp_weight_options", "exp_advantage_weights"]


def exp_advantage_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(A / beta), max_weight)``, the exponentiated-advantage weight of AWR and CRR.

    The exponent is clamped at ``log(max_weight)`` before ``exp`` so that large advantages
    with a small ``beta`` never overflow to ``inf`` (same value as capping afterwards).

    Examples:
        >>> exp_advantage_weights(torch.tensor([0.0, 0.1, 10.0]), beta=0.1, max_weight=20.0)
        tensor([ 1.0000,  2.7183, 20.0000])
    """
    return torch.exp(torch.clamp(advantage / beta, max=math.log(max_weight)))


def check_exp_weight_options(beta: float, max_weight: float) -> None:
    """``ValueError`` unless the options of :func:`exp_advantage_weights` are both > 0.

    Examples:
        >>> check_exp_weight_options(beta=0.0, max_weight=20.0)
        Traceback (most recent call last):
        ...
        ValueError: beta: expected a finite number > 0, got 0.0
    """
    check_number("beta", beta, minimum=0, strict=True)
    check_number("max_weight", max_weight, minimum=0, strict=True)


class AdvantageWeightedLoss(WeightedLogLikelihoodLoss, abc.ABC):
    """``-reduce(f(A) * log pi(a|s))`` with ``A = score - b(s)``; subclasses define ``f``.

    Args:
        actor_network (TensorDictModule): the policy (a module with ``get_dist``).
        value_network (TensorDictModule, optional): ``V(s)`` writing ``tensor_keys.value``
            (e.g. :func:`drpo_rl.models.make_value_critic`). When given, ``b(s) = V(s)`` and
            the output has a ``loss_value`` entry (MSE of ``V(s)`` to the score) that trains
            it; only the value network receives its gradient. When ``None``, ``b`` is the
            batch mean of the score (over its valid rows, see "Validity masks" in
            :class:`~drpo_rl.objectives.weighted.WeightedLogLikelihoodLoss`; ``loss_value``
            is reduced over the valid rows too).

    Keyword Args:
        separate_losses (bool, optional): TorchRL's choice for a value head that shares
            parameters (a trunk) with the actor. ``True`` (the default): ``loss_value``
            trains only the value network's own parameters, the shared ones are trained by
            ``loss_objective`` alone (they are held as detached buffers in
            ``value_network_params``, as TorchRL's ``ClipPPOLoss(separate_losses=True)``
            does). ``False``: ``loss_value`` reaches the shared parameters too. Without
            shared parameters both are the same.
        critic_network (TensorDictModule, optional): a ``Q(s, a)`` whose value of the logged
            action is the score (then ``A = Q(s, a) - V(s)``, CRR's advantage). It is read
            without gradient: train it with its own loss. Its parameters are in
            ``loss.parameters()`` but no term of this loss reaches them (see
            :class:`~drpo_rl.objectives.weighted.WeightedLogLikelihoodLoss`).
        reduction (str, optional): ``"none"`` | ``"mean"`` | ``"sum"``; default ``"mean"``.

    Output: ``loss_objective``, ``ess`` (effective sample size of the weights),
    ``advantage_mean``, ``advantage_std``, ``negative_advantage_fraction``, and
    ``loss_value`` when there is a value network.

    Examples:
        A rule that clones the better-than-baseline samples only:

        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.models import PolicySpecs, make_categorical_actor, make_value_critic
        >>> class PositiveAdvantageBC(AdvantageWeightedLoss):
        ...     def _advantage_weights(self, advantage):
        ...         return (advantage > 0).to(advantage.dtype)
        >>> specs = PolicySpecs(obs_dim=4, num_items=5)
        >>> loss = PositiveAdvantageBC(make_categorical_actor(specs), make_value_critic(specs))
        >>> data = TensorDict({
        ...     "observation": torch.randn(6, 4), "action": torch.randint(5, (6,)),
        ...     ("next", "reward"): torch.rand(6, 1)}, [6])
        >>> out = loss(data)
        >>> (out["loss_objective"] + out["loss_value"]).backward()  # actor and V(s) both train
        >>> bool(((loss.weights(data) > 0) == (loss.advantage(data) > 0)).all())
        True
    """

    @dataclass
    class _AcceptedKeys(WeightedLogLikelihoodLoss._AcceptedKeys):
        """Configurable tensordict keys (:meth:`set_keys`).

        Attributes:
            action (NestedKey): the logged action. Defaults to ``"action"``.
            score (NestedKey): the score when no critic is given. Defaults to
                ``("next", "reward")``.
            state_action_value (NestedKey): the critic's output. Defaults to
                ``"state_action_value"``.
            value (NestedKey): where the value network writes ``V(s)``. Defaults to
                ``"state_value"``.
        """

        value: NestedKey = "state_value"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    metric_keys: ClassVar[tuple[str, ...]] = (
        "advantage_mean",
        "advantage_std",
        "negative_advantage_fraction",
    )

    value_network: TensorDictModule
    value_network_params: TensorDictParams
    target_value_network_params: TensorDictParams

    def __init__(
        self,
        actor_network: TensorDictModule,
        value_network: TensorDictModule | None = None,
        *,
        separate_losses: bool = True,
        critic_network: TensorDictModule | None = None,
        reduction: Literal["none", "mean", "sum"] | None = None,
    ) -> None:
        super().__init__(actor_network, critic_network=critic_network, reduction=reduction)
        self.has_value = value_network is not None
        self.separate_losses = separate_losses
        if value_network is not None:
            self.convert_to_functional(
                value_network,
                "value_network",
                compare_against=list(actor_network.parameters()) if separate_losses else None,
            )
            self.out_keys = [*self.out_keys, "loss_value"]

    def _extra_in_keys(self) -> list[NestedKey]:
        return list(self.value_network.in_keys) if self.has_value else []

    @abc.abstractmethod
    def _advantage_weights(self, advantage: torch.Tensor) -> torch.Tensor:
        """Per-sample weights ``[M]`` from the detached advantages ``[M]``."""

    def _state_value(self, tensordict: TensorDictBase) -> torch.Tensor:
        work = tensordict.select(*self.value_network.in_keys, strict=False).copy()
        with self.value_network_params.to_module(self.value_network):
            value = self.value_network(work).get(self.tensor_keys.value, default=None)
        if value is None:
            raise KeyError(
                f"the value network did not write {self.tensor_keys.value!r}; set the loss's "
                "value key to the network's output key with set_keys(value=...)."
            )
        return value

    def _advantage(self, score, valid, tensordict) -> torch.Tensor:
        if not self.has_value:
            return score - valid_mean(score, valid)
        # no_grad rather than detached parameters: a detached TensorDictParams builds new
        # nn.Parameters, which torch.compile(fullgraph=True) cannot trace.
        with torch.no_grad():
            baseline = self._state_value(tensordict).reshape(score.shape)
        advantage = score - baseline
        return advantage if valid is None else torch.where(valid, advantage, 0.0)

    def _weights(self, score, valid, tensordict):
        advantage = self._advantage(score, valid, tensordict)
        negative = (advantage < 0).to(score.dtype)
        metrics = {
            "advantage_mean": valid_mean(advantage, valid),
            "advantage_std": valid_std(advantage, valid),
            "negative_advantage_fraction": valid_mean(negative, valid),
        }
        return self._advantage_weights(advantage), metrics

    def advantage(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The detached advantages ``score - b(s)`` of a batch, shaped like its batch (0 on
        rows a validity mask leaves out)."""
        score, valid, batch_shape = self._valid_score(tensordict)
        return self._advantage(score, valid, tensordict).reshape(batch_shape)

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``loss_objective`` and metrics (see the base class), plus ``loss_value``."""
        td_out = super().forward(tensordict)
        if self.has_value:
            # super().forward has checked this batch.
            score, _, batch_shape = self._valid_score(tensordict, check=False)
            value = self._state_value(tensordict).reshape(score.shape)
            loss_value = (value - score).square().reshape(batch_shape)
            td_out.set("loss_value", self._reduce_loss(loss_value, tensordict))
        return td_out

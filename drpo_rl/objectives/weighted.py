"""The weighted log-likelihood loss: one TorchRL ``LossModule`` for every weight rule.

DRPO, AdaptBC, DRPO-Exp and the baselines APG, AWR, CRR and AsymRe all minimise

    loss = -reduce_i( w_i * log pi(a_i | s_i) )

over logged pairs ``(s_i, a_i)``, with per-sample weights ``w_i`` that never carry gradient.
They differ only in how ``w`` is computed from a per-sample score (reward, advantage,
critic value). :class:`WeightedLogLikelihoodLoss` holds every TorchRL convention once; a
concrete loss only supplies its weight rule.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule, dispatch
from tensordict.utils import NestedKey
from torch import distributions as D
from torchrl.objectives.common import LossModule

from drpo_rl.objectives.inputs import check_batch, valid_rows
from envs.common.checks import check_choice

__all__ = ["WeightedLogLikelihoodLoss", "effective_sample_size", "valid_mean", "valid_std"]


def valid_mean(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The mean of a 1-D tensor over its valid entries (all of them when ``valid`` is None).

    Examples:
        >>> valid_mean(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([True, True, False]))
        tensor(1.5000)
    """
    if valid is None:
        return x.mean()
    return torch.where(valid, x, 0.0).sum() / valid.sum().clamp_min(1)


def valid_std(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The population standard deviation (ddof 0) of a 1-D tensor over its valid entries.

    Examples:
        >>> valid_std(torch.tensor([1.0, 3.0, 9.0]), torch.tensor([True, True, False]))
        tensor(1.)
    """
    if valid is None:
        return x.std(correction=0)
    centred = torch.where(valid, x - valid_mean(x, valid), 0.0)
    return (centred.square().sum() / valid.sum().clamp_min(1)).sqrt()


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size ``(sum |w|)^2 / sum w^2`` of a 1-D weight vector.

    It lies in ``[1, N]`` for non-negative weights that are not all zero (``N`` when they
    are equal, ``1`` when one sample carries them all) and is ``0`` when every weight is 0.
    Absolute values make it meaningful for signed weights (APG) too.

    Examples:
        >>> effective_sample_size(torch.tensor([1.0, 1.0, 0.0, 0.0]))
        tensor(2.)
        >>> effective_sample_size(torch.zeros(3))
        tensor(0.)
    """
    abs_sum = weights.abs().sum()
    sq_sum = weights.square().sum()
    # An all-zero weight vector keeps no sample: report 0 rather than 0/0.
    return torch.where(sq_sum > 0, abs_sum.square() / sq_sum.clamp_min(1e-30), 0.0)


class WeightedLogLikelihoodLoss(LossModule, abc.ABC):
    """Base class of the losses ``-reduce(w * log pi(a|s))`` with detached per-sample weights.

    The loss reads a batch of logged transitions, computes one score per sample (the logged
    reward by default, or a critic's ``Q(s, a)``), turns the scores into weights with the
    subclass's rule, and returns ``loss_objective = -reduce(w * log pi(a|s))``, where
    ``log pi(a|s)`` is the log-probability of the *logged* action under the actor's current
    distribution. Only the actor receives gradients: weights and scores are detached.

    Subclassing contract. A concrete loss defines:

    - :meth:`_weights` ``(score, valid, tensordict) -> (weights, metrics)``: ``score`` is a
      1-D detached float tensor of the ``M`` per-sample scores (the batch flattened);
      ``valid`` is ``None`` (every row counts) or a bool ``[M]`` mask of the rows that count
      (see "Validity masks" below; ``score`` is 0 on the others); ``tensordict`` is the
      input, to read any extra per-sample entry (use :meth:`_read_per_sample` to get it
      flattened like ``score``). Every statistic of the rule (thresholds, baselines,
      normalisations) must be taken over the valid rows only (:func:`valid_mean`,
      :func:`valid_std`). Return ``weights`` of shape ``[M]`` and a dict of 0-d tensors
      logged next to the loss. The weights are put on the scale at which
      ``reduction="mean"`` (a mean over the ``V`` valid samples) gives the intended
      objective; e.g. a rule that averages over a kept subset of ``K`` samples multiplies
      its weights by ``V / K``. The base detaches the weights and zeroes them on invalid
      rows, so a rule can neither leak gradient nor weight a masked row.
    - ``metric_keys``: a class attribute naming, in order, the keys of that dict (out_keys
      must be known before any call).
    - Optionally :meth:`update` ``(stats)``: the update of state held in buffers (e.g.
      DRPO's adaptive ``kappa``) from the statistics a forward returned. ``forward`` itself
      never changes any state: two identical calls give identical outputs. The training
      loop calls ``loss.update(out)`` after the optimiser step, the way TorchRL's
      ``SoftUpdate.step()`` updates target networks. It must update buffers in place
      (``buffer.copy_(...)``) to stay ``torch.compile`` friendly.
    - Optionally extra configurable keys: subclass ``_AcceptedKeys`` (a dataclass inheriting
      from this one) and override :meth:`_extra_in_keys`.

    The base provides ``_AcceptedKeys``/``set_keys`` (unknown keys raise ``ValueError``),
    ``in_keys``/``out_keys``, the functional actor (``actor_network`` with its parameters
    in ``actor_network_params``), ``reduction`` (``"none"`` returns the per-sample losses
    with the batch shape of the score), the keyword call (``loss(observation=..., ...)``),
    and leaves the input tensordict unchanged.

    Validity masks: like TorchRL's own losses, rows flagged invalid by the entries of
    :attr:`~torchrl.objectives.LossModule.loss_mask_key` (by default ``"auto"``:
    ``("collector", "mask")`` written by TorchRL's ``SliceSampler(pad_output=True)`` and
    ``"shifted_valid"`` written by its value estimators; ``False`` marks an invalid row) are
    left out: the weight rule sees only the valid rows and the reduction is TorchRL's masked
    reduction (``"mean"`` divides by the number of valid rows; ``"none"`` keeps the batch
    shape, with 0 on invalid rows). A masked batch gives the outputs of the batch of its
    valid rows alone. Set ``loss.loss_mask_key = None`` to use every row.

    Args:
        actor_network (TensorDictModule): the policy, a module with ``get_dist`` (e.g. a
            :class:`~torchrl.modules.ProbabilisticActor` with a Normal, IndependentNormal,
            TanhNormal, Categorical or OneHotCategorical distribution).

    Keyword Args:
        critic_network (TensorDictModule, optional): when given, the score is this critic's
            output at ``tensor_keys.state_action_value`` (e.g. ``Q(s, a)`` of the logged
            action), computed without gradient; otherwise the score is read from
            ``tensor_keys.score``. The critic is held functionally like the actor, sharing
            its parameter tensors with the module you pass: they are in
            ``loss.parameters()`` and ``state_dict()``, but no term of this loss reaches
            them (their ``.grad`` stays ``None``, so an optimiser over this loss alone leaves
            them as they are). Train the critic with its own loss (e.g. TorchRL's
            ``IQLLoss``); one optimiser over both losses should count each parameter once
            (:func:`drpo_rl.algorithms.algorithm.make_adam` does).
        reduction (str, optional): ``"none"`` | ``"mean"`` | ``"sum"``. Defaults to ``"mean"``.

    Shapes: the score entry is ``[*B, 1]`` (TorchRL's reward convention) or ``[*B]``; the
    per-sample log-probability must reduce to ``[*B]`` (event dimensions of a
    non-Independent Normal are summed). Weight rules see the ``prod(B)`` samples flattened.

    Examples:
        A weight rule that keeps samples with a positive score, at equal weight:

        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule, NormalParamExtractor
        >>> from torchrl.modules import ProbabilisticActor, IndependentNormal
        >>> from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, valid_mean
        >>> class PositiveOnlyLoss(WeightedLogLikelihoodLoss):
        ...     metric_keys = ("kept_fraction",)
        ...
        ...     def _weights(self, score, valid, tensordict):
        ...         kept = (score > 0).to(score.dtype)
        ...         return kept, {"kept_fraction": valid_mean(kept, valid)}
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(3, 4), NormalParamExtractor())
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=IndependentNormal)
        >>> loss = PositiveOnlyLoss(actor)
        >>> data = TensorDict({
        ...     "observation": torch.randn(4, 3), "action": torch.randn(4, 2),
        ...     ("next", "reward"): torch.tensor([[1.0], [-1.0], [2.0], [0.0]])}, [4])
        >>> out = loss(data)
        >>> sorted(out.keys())
        ['ess', 'kept_fraction', 'loss_objective']
        >>> out["kept_fraction"]
        tensor(0.5000)
        >>> out["loss_objective"].backward()

        Rows flagged invalid (here by ``("collector", "mask")``) are left out:

        >>> data["collector", "mask"] = torch.tensor([True, True, False, True])
        >>> loss(data)["kept_fraction"]  # 1 of the 3 valid rows has a positive score
        tensor(0.3333)
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (change them with :meth:`set_keys`).

        Attributes:
            action (NestedKey): the logged action. Defaults to ``"action"``.
            score (NestedKey): the per-sample score the weights are computed from, when no
                critic is given. Defaults to ``("next", "reward")``.
            state_action_value (NestedKey): where the critic writes its value, read as the
                score when a critic is given. Defaults to ``"state_action_value"``.
        """

        action: NestedKey = "action"
        score: NestedKey = ("next", "reward")
        state_action_value: NestedKey = "state_action_value"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    metric_keys: ClassVar[tuple[str, ...]] = ()
    # Rows a validity mask leaves out are selected away, never multiplied: they may hold
    # NaN (read by drpo_rl.algorithms.Algorithm.check).
    masks_non_finite_rows: ClassVar[bool] = True

    actor_network: TensorDictModule
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    critic_network: TensorDictModule
    critic_network_params: TensorDictParams
    target_critic_network_params: TensorDictParams

    def __init__(
        self,
        actor_network: TensorDictModule,
        *,
        critic_network: TensorDictModule | None = None,
        reduction: Literal["none", "mean", "sum"] | None = None,
    ) -> None:
        if reduction is None:
            reduction = "mean"
        check_choice("reduction", reduction, ("none", "mean", "sum"))
        if not hasattr(actor_network, "get_dist"):
            raise ValueError(
                "actor_network must be a probabilistic module with a get_dist method "
                f"(e.g. torchrl.modules.ProbabilisticActor), got {type(actor_network).__name__}."
            )
        super().__init__()
        self._in_keys = None
        self.convert_to_functional(actor_network, "actor_network")
        self.has_critic = critic_network is not None
        if critic_network is not None:
            self.convert_to_functional(critic_network, "critic_network")
        self.reduction = reduction
        self.out_keys = ["loss_objective", "ess", *self.metric_keys]

    # ----------------------------------------------------------------------------- keys
    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # No value estimator: scores are read, not bootstrapped.
        pass

    def _extra_in_keys(self) -> list[NestedKey]:
        """Keys the weight rule reads beyond the score (override in subclasses)."""
        return []

    def _set_in_keys(self) -> None:
        keys = [*self.actor_network.in_keys, self.tensor_keys.action]
        if self.has_critic:
            keys.extend(self.critic_network.in_keys)
        else:
            keys.append(self.tensor_keys.score)
        keys.extend(self._extra_in_keys())
        unique = []
        for key in keys:
            if key not in unique:
                unique.append(key)
        self._in_keys = unique

    def set_keys(self, **kwargs) -> None:
        super().set_keys(**kwargs)
        self._in_keys = None  # the cached in_keys depend on the keys

    @property
    def in_keys(self):
        if self._in_keys is None:
            self._set_in_keys()
        return self._in_keys

    @in_keys.setter
    def in_keys(self, values):
        self._in_keys = values

    # ------------------------------------------------------------------- weight rule
    @abc.abstractmethod
    def _weights(
        self, score: torch.Tensor, valid: torch.Tensor | None, tensordict: TensorDictBase
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-sample weights ``[M]`` and 0-d metrics from the 1-D scores ``[M]`` (statistics
        over the rows where ``valid`` is true, or over every row when it is ``None``)."""

    def update(self, stats: Mapping[str, torch.Tensor] | TensorDictBase) -> None:
        """Update the rule's state from the output ``stats`` of a forward (here: nothing).

        Call it once per training step, after the optimiser step; losses with a stateful
        rule (DRPO's adaptive kappa) override it. ``forward`` never updates any state.
        """

    # ----------------------------------------------------------------------- pieces
    @staticmethod
    def _batch_shape_of(score: torch.Tensor) -> torch.Size:
        # TorchRL rewards and values carry a trailing singleton dimension.
        if score.ndim >= 1 and score.shape[-1] == 1:
            return score.shape[:-1]
        return score.shape

    def _valid_rows(
        self, tensordict: TensorDictBase, batch_shape: torch.Size
    ) -> torch.Tensor | None:
        """The bool ``[M]`` mask of the rows that count, ``None`` when no mask entry is there.

        The entries are those TorchRL's ``_reduce_loss`` reads (``loss_mask_key``), ANDed.
        """
        return valid_rows(tensordict, self._loss_mask_keys(), batch_shape)

    def _read_score(self, tensordict: TensorDictBase) -> torch.Tensor:
        if self.has_critic:
            key = self.tensor_keys.state_action_value
            # no_grad rather than detached parameters: a detached TensorDictParams builds
            # new nn.Parameters, which torch.compile(fullgraph=True) cannot trace.
            with torch.no_grad(), self.critic_network_params.to_module(self.critic_network):
                critic_td = self.critic_network(
                    tensordict.select(*self.critic_network.in_keys, strict=False)
                )
            source = f"the critic output {key!r}"
            score = critic_td.get(key, default=None)
        else:
            key = self.tensor_keys.score
            source = f"the score entry {key!r}"
            score = tensordict.get(key, default=None)
        if score is None:
            raise KeyError(f"{source} is missing from the input tensordict.")
        if not torch.is_floating_point(score):
            raise ValueError(f"{source} must be a float tensor, got dtype {score.dtype}.")
        return score.detach()

    def _read_per_sample(self, tensordict: TensorDictBase, key: NestedKey, numel: int):
        """Read ``key`` (shape ``[*B]`` or ``[*B, 1]``) flattened to ``[numel]``."""
        value = tensordict.get(key, default=None)
        if value is None:
            raise KeyError(f"the entry {key!r} is missing from the input tensordict.")
        if value.numel() != numel:
            raise ValueError(
                f"the entry {key!r} must hold one value per sample ({numel}), "
                f"got shape {tuple(value.shape)}."
            )
        return value.reshape(numel)

    def _distribution(self, tensordict: TensorDictBase) -> tuple[D.Distribution, TensorDictBase]:
        """The actor's distribution on a shallow copy of the input (parameters attached).

        The returned tensordict holds the distribution's parameters (e.g. ``loc`` and
        ``scale``) as written by the actor, still connected to the graph.
        """
        work = tensordict.copy()
        with self.actor_network_params.to_module(self.actor_network, preserve_module_state=False):
            dist = self.actor_network.get_dist(work)
        return dist, work

    def _log_prob(
        self, dist: D.Distribution, action: torch.Tensor, batch_shape: torch.Size
    ) -> torch.Tensor:
        expected_ndim = len(dist.batch_shape) + len(dist.event_shape)
        # Integer actions of a Categorical are often stored as [*B, 1].
        if action.ndim == expected_ndim + 1 and action.shape[-1] == 1:
            action = action.squeeze(-1)
        log_prob = dist.log_prob(action)
        nb = len(batch_shape)
        if log_prob.shape[:nb] != batch_shape:
            raise ValueError(
                f"the log-probability of the action {self.tensor_keys.action!r} has shape "
                f"{tuple(log_prob.shape)}, which does not start with the batch shape "
                f"{tuple(batch_shape)} of the score; check the action and score entries."
            )
        if log_prob.ndim > nb:
            # A non-Independent Normal gives one log-density per action dimension.
            log_prob = log_prob.sum(tuple(range(nb, log_prob.ndim)))
        return log_prob

    def _valid_score(self, tensordict: TensorDictBase, check: bool = True):
        """``(score [M], valid [M] or None, batch shape)``; the score is 0 on invalid rows.

        With ``check``, an empty batch or a non-finite (or beyond float32-safe) input or
        critic score on a valid row raises (:func:`~drpo_rl.objectives.inputs.check_batch`).
        """
        score = self._read_score(tensordict)
        batch_shape = self._batch_shape_of(score)
        flat_score = score.reshape(-1)
        valid = self._valid_rows(tensordict, batch_shape)
        if check:
            inputs = tensordict.select(*self.in_keys, strict=False)
            if self.has_critic:
                inputs.set(self.tensor_keys.state_action_value, score, inplace=False)
            keys = [*self.in_keys, self.tensor_keys.state_action_value]
            check_batch(type(self).__name__, inputs, keys, valid, batch_shape)
        if valid is not None:
            # Select, not multiply: a masked row may hold a non-finite score.
            flat_score = torch.where(valid, flat_score, 0.0)
        return flat_score, valid, batch_shape

    def _score_and_weights(self, tensordict: TensorDictBase):
        flat_score, valid, batch_shape = self._valid_score(tensordict)
        weights, metrics = self._weights(flat_score, valid, tensordict)
        if weights.shape != flat_score.shape:
            raise ValueError(
                f"{type(self).__name__}._weights returned shape {tuple(weights.shape)}, "
                f"expected {tuple(flat_score.shape)} (one weight per sample)."
            )
        weights = weights.detach()
        if valid is not None:
            weights = torch.where(valid, weights, 0.0)
        return flat_score, batch_shape, weights, metrics

    # ------------------------------------------------------------------------ public
    def weights(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The detached per-sample weights for a batch, shaped like the score's batch.

        Reads the same keys as ``forward``; never updates any state.
        """
        _, batch_shape, weights, _ = self._score_and_weights(tensordict)
        return weights.reshape(batch_shape)

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute ``loss_objective``, ``ess`` and the rule's metrics for a batch."""
        _, batch_shape, weights, metrics = self._score_and_weights(tensordict)
        dist, work = self._distribution(tensordict)
        action = tensordict.get(self.tensor_keys.action, default=None)
        if action is None:
            raise KeyError(
                f"the action entry {self.tensor_keys.action!r} is missing from the input."
            )
        log_prob = self._log_prob(dist, action, batch_shape)
        loss = -(weights.reshape(batch_shape) * log_prob)
        loss = self._reduce_loss(loss, tensordict)
        td_out = TensorDict(
            {"loss_objective": loss, "ess": effective_sample_size(weights), **metrics}
        )
        self._clear_weakrefs(tensordict, td_out, work, "actor_network_params")
        return td_out

"""DRPOLoss: Distributionally Robust Policy Optimization as a TorchRL loss.

The method is explained in docs/method.md, sections "Optimistic DRO and the exact hard
filter", "The DRPO update" and "Adaptive kappa".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey

from drpo_rl.distributed.collectives import active_group_size, gather_rows, mean_over_ranks
from drpo_rl.objectives.dro import top_fraction_mask
from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, valid_mean, valid_std
from envs.common.checks import check_choice, check_number

__all__ = ["FILTER_SCOPES", "DRPOLoss"]

_WEIGHTINGS = ("drpo", "exp", "uniform")
#: The batches the top fraction may be taken of under data-parallel training.
FILTER_SCOPES = ("rank", "global")


def _weightless_group_fraction(
    weighted: torch.Tensor, groups: torch.Tensor | None, valid: torch.Tensor | None
) -> torch.Tensor:
    """The fraction of groups (with a valid row) in which no row has a positive weight.

    Without ``groups`` the batch is one group. Static shapes (a sort and two scatters, no
    ``unique``), so that it traces under ``torch.compile(fullgraph=True)``.
    """
    if valid is not None:
        weighted = weighted & valid
    if groups is None:
        return (~weighted.any()).to(torch.float32)
    order = torch.argsort(groups, stable=True)
    sorted_groups = groups[order]
    true = torch.ones(1, dtype=torch.bool, device=groups.device)
    segment = torch.cumsum(torch.cat([true, sorted_groups[1:] != sorted_groups[:-1]]), 0) - 1
    rows = torch.ones_like(weighted) if valid is None else valid
    per_group_rows = torch.zeros(groups.numel(), device=groups.device)
    per_group_rows = per_group_rows.scatter_add(0, segment, rows[order].float())
    per_group_hits = torch.zeros_like(per_group_rows)
    per_group_hits = per_group_hits.scatter_add(0, segment, weighted[order].float())
    present = per_group_rows > 0
    return (present & (per_group_hits == 0)).sum() / present.sum().clamp_min(1)


class DRPOLoss(WeightedLogLikelihoodLoss):
    """DRPO: weighted log-likelihood on the top-``kappa`` fraction of each batch.

    Per batch of ``N`` samples with scores ``r`` (the logged reward by default):

    1. keep the top ``K = max(1, floor(kappa N))`` samples by score; ``nu`` is the
       smallest kept score (the hard-filtering solution of the optimistic DRO problem,
       see :func:`~drpo_rl.objectives.optimistic_dro_weights`);
    2. weight each kept sample by the ``weighting`` rule, the others by 0;
    3. ``loss_objective = -(1/K) * sum_i w_i log pi(a_i | s_i)`` (with ``reduction="mean"``;
       the per-sample weights exposed by :meth:`weights` carry the factor ``N/K`` so that
       the mean over all ``N`` samples is this value).

    Weightings:

    - ``"drpo"``: ``w = (r - nu) / (std(A) + eps)``, ``A = r - nu`` over the kept samples,
      with the *population* standard deviation (ddof 0) over the kept set, as in
      docs/method.md, "The DRPO update", step 3. Without groups ``std(A)`` is the spread of the kept
      scores. ddof 0 keeps ``K = 1`` finite (the single kept sample is the boundary and
      gets weight 0). No mean is subtracted, so every weight is ``>= 0``.
    - ``"exp"`` (DRPO-Exp): ``w = exp((r - mean_kept) / beta)``, the exponent clamped so
      that no weight exceeds ``weight_cap`` (100, as AWR implementations cap).
    - ``"uniform"`` (AdaptBC): ``w = 1``, i.e. behaviour cloning of the kept samples.

    Adaptive kappa (``adaptive=True``): ``forward`` never changes kappa (two identical calls
    give identical outputs); the training loop calls :meth:`update` with the forward's
    output after each optimiser step, the way TorchRL's ``SoftUpdate.step()`` follows it::

        out = loss(batch)
        out["loss_objective"].backward()
        optimizer.step()
        optimizer.zero_grad()
        loss.update(out)  # adaptive kappa

    ``update`` sets ``kappa <- clip(kappa * adapt_up, kappa_min, kappa_max)`` when the
    spread of the kept scores (``out["kept_score_std"]``) is below ``adapt_lambda`` times
    the spread of the batch's scores (``out["batch_score_std"]``), else
    ``kappa <- clip(kappa * adapt_down, ...)``; with ``adaptive=False`` it does nothing.
    ``kappa`` is a buffer: saved in ``state_dict``, settable with ``loss.kappa = 0.2``,
    updated in place so that a compiled update step (``torch.compile(fullgraph=True)``)
    has no graph break. The output ``kappa`` is the value used for the batch.

    Groups: ``set_keys(group="user_id")`` applies the filter within each group (top
    ``max(1, floor(kappa n_g))`` of the ``n_g`` rows of a user or context); ``std(A)`` and
    the adaptive rule then use the kept samples of all groups together, and ``threshold``
    is the mean over samples of their group's ``nu``. Every group keeps at least its best
    row, but with ``weighting="drpo"`` a group's kept rows all get weight 0 when they all
    tie with its threshold, in particular whenever it keeps a single row (its best row *is*
    the threshold: e.g. 4-row groups with ``kappa < 0.5``). Such a group teaches nothing
    for that batch; the output ``weightless_groups`` reports the fraction of groups in that
    state (``ess`` is 0 when it is every group), so it is never silent.

    Data-parallel training (docs/method.md, "The filter on several processes"): under
    ``torch.distributed`` (DDP, one batch per rank) ``filter_scope`` says which batch the
    top fraction is taken of. ``"rank"`` (the default): each rank filters its own batch,
    and :meth:`update` averages the two spreads over the ranks, so kappa stays the same on
    every rank. ``"global"``: the scores (with groups and validity) of all ranks are
    all-gathered, the filter and every statistic are computed on the concatenated batch,
    and each rank keeps its own rows' weights, rescaled so that DDP's gradient average is
    exactly the gradient one process gets on the concatenated batch (every output but
    ``loss_objective`` and ``ess`` is then that process's too). Every rank must pass the
    same batch size. With one process (no process group) both scopes are the plain filter.

    Validity masks (``("collector", "mask")``, ``"shifted_valid"``; see
    :class:`~drpo_rl.objectives.weighted.WeightedLogLikelihoodLoss`): ``N``, ``n_g``, the
    threshold, the normalisation, the spreads and every output count valid rows only.

    Args:
        actor_network (TensorDictModule): a probabilistic actor (Gaussian over item
            embeddings, or categorical over item ids).

    Keyword Args:
        kappa (float): initial kept fraction, in ``[kappa_min, kappa_max]``. Default 0.5.
        adaptive (bool): adapt kappa after each training forward. Default ``True``.
        adapt_lambda (float): the variance ratio threshold ``lambda``. Default 0.5.
        kappa_min, kappa_max (float): the clip range of kappa. Defaults 0.05 and 1.0.
        adapt_up, adapt_down (float): multiplicative steps. Defaults 1.02 and 0.98.
        weighting (str): ``"drpo"`` | ``"exp"`` | ``"uniform"``. Default ``"drpo"``.
        beta (float): temperature of ``"exp"``. Default 0.05.
        weight_cap (float): largest ``"exp"`` weight. Default 100.
        eps (float): added to ``std(A)``. Default 1e-8.
        critic_network (TensorDictModule, optional): DRPO-Q: the score is this critic's
            output at ``tensor_keys.state_action_value`` (``Q(s, a)``, detached), e.g. a
            critic trained with TorchRL's ``IQLLoss``.
        reduction (str): ``"none"`` | ``"mean"`` | ``"sum"``. Default ``"mean"``.
        filter_scope (str): ``"rank"`` | ``"global"``: the batch filtered under
            data-parallel training (see above). Default ``"rank"``.
        process_group (ProcessGroup, optional): the ranks that share the filter and kappa;
            default: the whole ``torch.distributed`` world, when one is initialised.

    Outputs: ``loss_objective``, ``ess`` (Kish effective sample size of the weights),
    ``kappa``, ``threshold``, ``kept_fraction`` (``K / N``), ``kept_score_std`` and
    ``batch_score_std`` (the two spreads compared by the adaptive rule),
    ``weightless_groups`` (the fraction of groups, the batch being one without groups,
    whose rows all have weight 0).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule, NormalParamExtractor
        >>> from torchrl.modules import ProbabilisticActor, IndependentNormal
        >>> from drpo_rl.objectives import DRPOLoss
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 6), NormalParamExtractor())
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=IndependentNormal)
        >>> loss = DRPOLoss(actor, kappa=0.5)
        >>> data = TensorDict({
        ...     "observation": torch.randn(8, 4), "action": torch.randn(8, 3),
        ...     ("next", "reward"): torch.arange(8.0).unsqueeze(-1)}, [8])
        >>> out = loss(data)
        >>> out["kept_fraction"], out["threshold"], out["kappa"]
        (tensor(0.5000), tensor(4.), tensor(0.5000))
        >>> out["loss_objective"].backward()
        >>> out["kept_score_std"] < 0.5 * out["batch_score_std"]  # 1.12 < 0.5 * 2.29
        tensor(True)
        >>> loss.kappa  # forward changes nothing
        tensor(0.5000)
        >>> loss.update(out)  # the kept scores are narrow compared with the batch: kappa grows
        >>> loss.kappa
        tensor(0.5100)
    """

    @dataclass
    class _AcceptedKeys(WeightedLogLikelihoodLoss._AcceptedKeys):
        """Configurable tensordict keys (change them with :meth:`set_keys`).

        Attributes:
            action (NestedKey): the logged action. Defaults to ``"action"``.
            score (NestedKey): the per-sample score. Defaults to ``("next", "reward")``.
            state_action_value (NestedKey): the critic's output, read as the score when a
                critic is given (DRPO-Q). Defaults to ``"state_action_value"``.
            group (NestedKey, optional): integer group ids (e.g. the user id); when set,
                the top fraction is taken within each group. Defaults to ``None``.
        """

        group: NestedKey | None = None

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    metric_keys = (
        "kappa",
        "threshold",
        "kept_fraction",
        "kept_score_std",
        "batch_score_std",
        "weightless_groups",
    )
    _schedulable_buffers = frozenset({"kappa"})

    def __init__(
        self,
        actor_network: TensorDictModule,
        *,
        kappa: float = 0.5,
        adaptive: bool = True,
        adapt_lambda: float = 0.5,
        kappa_min: float = 0.05,
        kappa_max: float = 1.0,
        adapt_up: float = 1.02,
        adapt_down: float = 0.98,
        weighting: Literal["drpo", "exp", "uniform"] = "drpo",
        beta: float = 0.05,
        weight_cap: float = 100.0,
        eps: float = 1e-8,
        critic_network: TensorDictModule | None = None,
        reduction: Literal["none", "mean", "sum"] | None = None,
        filter_scope: Literal["rank", "global"] = "rank",
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        if not 0.0 < kappa_min <= kappa_max <= 1.0:
            raise ValueError(
                f"need 0 < kappa_min <= kappa_max <= 1, got kappa_min={kappa_min}, "
                f"kappa_max={kappa_max}."
            )
        check_number("kappa", kappa, minimum=kappa_min, maximum=kappa_max)
        check_choice("weighting", weighting, _WEIGHTINGS)
        check_choice("filter_scope", filter_scope, FILTER_SCOPES)
        check_number("beta", beta, minimum=0, strict=True)
        check_number("weight_cap", weight_cap, minimum=0, strict=True)
        check_number("eps", eps, minimum=0)
        check_number("adapt_lambda", adapt_lambda, minimum=0)
        if not 0 < adapt_down <= 1 <= adapt_up:
            raise ValueError(
                f"need 0 < adapt_down <= 1 <= adapt_up, got {adapt_down} and {adapt_up}."
            )
        super().__init__(actor_network, critic_network=critic_network, reduction=reduction)
        self.register_buffer("kappa", torch.tensor(float(kappa)))
        self.adaptive = adaptive
        self.adapt_lambda = adapt_lambda
        self.kappa_min = kappa_min
        self.kappa_max = kappa_max
        self.adapt_up = adapt_up
        self.adapt_down = adapt_down
        self.weighting = weighting
        self.beta = beta
        self.log_weight_cap = math.log(weight_cap)
        self.eps = eps
        self.filter_scope = filter_scope
        self.process_group = process_group

    def _extra_in_keys(self) -> list[NestedKey]:
        return [] if self.tensor_keys.group is None else [self.tensor_keys.group]

    def _weights(self, score: torch.Tensor, valid: torch.Tensor | None, tensordict):
        groups = None
        if self.tensor_keys.group is not None:
            groups = self._read_per_sample(tensordict, self.tensor_keys.group, score.numel())
        world = active_group_size(self.process_group)
        if self.filter_scope == "rank" or world == 1:
            return self._filter(score, valid, groups)
        return self._global_weights(score, valid, groups, world)

    def _global_weights(self, score, valid, groups, world: int):
        """This rank's weights from the filter of the batch of all ranks (global scope)."""
        columns = [score]
        if valid is not None:
            columns.append(valid)
        if groups is not None:
            columns.append(groups)
        gathered, mine = gather_rows(columns, self.process_group)
        all_valid = gathered[1] if valid is not None else None
        all_groups = gathered[-1] if groups is not None else None
        weights, metrics = self._filter(gathered[0], all_valid, all_groups)
        # DDP averages the ranks' gradients. A "mean" reduction divides by the rank's own
        # valid rows: scaling by world * n_rank / n_all makes the average the one process's
        # mean (1 without masks, the ranks' batches being equal); a "sum" needs world.
        scale = float(world)
        if self.reduction == "mean" and valid is not None:
            scale = world * valid.sum() / all_valid.sum().clamp_min(1)
        elif self.reduction == "mean":
            scale = 1.0
        return weights[mine] * scale, metrics

    def _filter(self, score: torch.Tensor, valid: torch.Tensor | None, groups):
        kept, threshold = top_fraction_mask(score, self.kappa, groups, valid)
        kept_f = kept.to(score.dtype)
        # clamp_min: no row is kept only when no row is valid.
        n_kept = kept_f.sum().clamp_min(1)
        n_valid = score.numel() if valid is None else valid.sum()
        kept_mean = (score * kept_f).sum() / n_kept
        kept_score_std = (((score - kept_mean) * kept_f).square().sum() / n_kept).sqrt()
        if self.weighting == "drpo":
            advantage = torch.where(kept, score - threshold, 0.0)
            adv_mean = advantage.sum() / n_kept
            adv_std = (((advantage - adv_mean) * kept_f).square().sum() / n_kept).sqrt()
            rule = advantage / (adv_std + self.eps)
        elif self.weighting == "exp":
            exponent = ((score - kept_mean) / self.beta).clamp(max=self.log_weight_cap)
            rule = torch.exp(exponent) * kept_f
        else:
            rule = kept_f
        # Mean reduction over the N valid samples then equals (1/K) * sum over the kept ones.
        weights = rule * (n_valid / n_kept)
        metrics = {
            "kappa": self.kappa.detach().clone(),
            "threshold": valid_mean(threshold, valid),
            "kept_fraction": kept_f.sum() / n_valid,
            "kept_score_std": kept_score_std,
            "batch_score_std": valid_std(score, valid),
            "weightless_groups": _weightless_group_fraction(rule > 0, groups, valid),
        }
        return weights, metrics

    def update(self, stats: Mapping[str, torch.Tensor] | TensorDictBase) -> None:
        """Adapt ``kappa`` from the output ``stats`` of a forward (docs/method.md, "Adaptive
        kappa"); call it once per training step, after the optimiser step.

        Reads ``stats["kept_score_std"]`` and ``stats["batch_score_std"]``, updates the
        ``kappa`` buffer in place; does nothing when ``adaptive=False``. Under data-parallel
        training with ``filter_scope="rank"`` the spreads are first averaged over the ranks
        (one all-reduce), so every rank takes the same step.
        """
        if not self.adaptive:
            return
        if self.filter_scope == "rank" and active_group_size(self.process_group) > 1:
            # Each rank saw its own spreads: their means keep kappa equal on every rank.
            keys = ("kept_score_std", "batch_score_std")
            stats = mean_over_ranks({key: stats[key] for key in keys}, self.process_group)
        with torch.no_grad():
            narrow = stats["kept_score_std"] < self.adapt_lambda * stats["batch_score_std"]
            step = torch.where(narrow, self.adapt_up, self.adapt_down)
            self.kappa.copy_((self.kappa * step).clamp(self.kappa_min, self.kappa_max))

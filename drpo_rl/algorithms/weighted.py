"""Registry builders of the weighted log-likelihood family: DRPO and its variants, APG, AWR,
CRR, AsymRe (all on :class:`~drpo_rl.objectives.weighted.WeightedLogLikelihoodLoss`)."""

from __future__ import annotations

from typing import Literal

import torch
from tensordict import TensorDictBase
from torchrl.objectives import SoftUpdate

from drpo_rl.algorithms.algorithm import AlgorithmParts, loss_compute, scalar_terms
from drpo_rl.algorithms.networks import NetworkOptions
from drpo_rl.algorithms.scores import check_td_lambda, score_key, td_scored
from drpo_rl.algorithms.torchrl_baselines import make_iql_loss
from drpo_rl.algorithms.transitions import complete_terminal_transitions
from drpo_rl.models import PolicySpecs
from drpo_rl.objectives.apg import APGLoss
from drpo_rl.objectives.asymre import AsymReLoss
from drpo_rl.objectives.awr import AWRLoss
from drpo_rl.objectives.crr import CRRLoss
from drpo_rl.objectives.drpo import DRPOLoss
from envs.common.checks import check_choice, check_number

__all__ = [
    "ADVANTAGE_LOSSES",
    "DRPO_OPTIONS",
    "DRPO_Q_OPTIONS",
    "build_advantage",
    "build_drpo",
    "build_drpo_q",
]

ADVANTAGE_LOSSES = {"apg": APGLoss, "awr": AWRLoss, "crr": CRRLoss, "asymre": AsymReLoss}

# The DRPOLoss keywords the registry exposes as hyper-parameters, with the loss's own
# defaults (DRPO-Q: the filter's, on Q instead of reward).
DRPO_OPTIONS = ("kappa", "adaptive", "adapt_lambda", "kappa_min", "beta", "weight_cap")
DRPO_Q_OPTIONS = ("kappa", "adaptive", "adapt_lambda", "kappa_min")


def build_drpo(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    weighting: Literal["drpo", "exp", "uniform"],
    score: Literal["reward", "return_to_go"] = "reward",
    **drpo_options,
) -> AlgorithmParts:
    """DRPO (``weighting="drpo"``), DRPO-Exp (``"exp"``) and AdaptBC (``"uniform"``);
    the filter ranks rows by ``score`` (see :mod:`drpo_rl.algorithms.scores`);
    ``drpo_options`` (``kappa``, ``adaptive``, ``adapt_lambda``, ``kappa_min``, ``beta``,
    ``weight_cap``) go to :class:`~drpo_rl.objectives.drpo.DRPOLoss`."""
    key = score_key(score, allowed=("reward", "return_to_go"))
    actor = net.actor(specs)
    loss = DRPOLoss(actor, weighting=weighting, **drpo_options)
    loss.set_keys(score=key)
    return AlgorithmParts(actor, {"policy": loss}, loss_compute(loss), state_updates=(loss.update,))


def build_advantage(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    rule: Literal["apg", "awr", "crr", "asymre"],
    baseline: Literal["value", "mean"] = "value",
    score: Literal["reward", "return_to_go", "td"] = "reward",
    gamma: float = 0.9,
    lmbda: float = 0.0,
    **rule_kwargs,
) -> AlgorithmParts:
    """APG, AWR, CRR, AsymRe: the loss ``ADVANTAGE_LOSSES[rule]`` with a learned ``V(s)`` baseline
    (``baseline="value"``) or the batch mean (``"mean"``), on the advantage ``score - b(s)``
    (``score``: see :mod:`drpo_rl.algorithms.scores`; ``"td"`` needs the learned ``V``,
    discounts by ``gamma`` and, with ``lmbda`` > 0, is the TD(lambda) return over the
    batch's session segments); ``rule_kwargs`` (``beta``, ``form``, ``max_weight``,
    ``negative_scale``) go to the loss."""
    check_choice("baseline", baseline, ("value", "mean"))
    key = score_key(score)
    if score == "td" and baseline != "value":
        raise ValueError('score: "td" bootstraps on the learned V(s); it needs baseline="value"')
    check_number("gamma", gamma, minimum=0, maximum=1)
    check_td_lambda(score, lmbda)
    actor = net.actor(specs)
    value = net.value(specs) if baseline == "value" else None
    loss = ADVANTAGE_LOSSES[rule](actor, value, **rule_kwargs)
    loss.set_keys(score=key)
    compute = loss_compute(loss)
    if score == "td":

        def state_value(td: TensorDictBase) -> torch.Tensor:
            with loss.value_network_params.to_module(loss.value_network):
                return loss.value_network(td.select(*value.in_keys).copy())["state_value"]

        scored, plain = td_scored(state_value, gamma, lmbda), compute

        def compute(batch: TensorDictBase) -> dict[str, torch.Tensor]:
            return plain(scored(complete_terminal_transitions(batch)))

    # Their rules keep no state; the call keeps every weighted loss's step alike.
    return AlgorithmParts(actor, {"policy": loss}, compute, state_updates=(loss.update,))


def build_drpo_q(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    expectile: float = 0.7,
    gamma: float = 0.99,
    tau: float = 0.005,
    **filter_options,
) -> AlgorithmParts:
    """DRPO-Q: DRPO's filter and weights on ``Q(s, a)`` instead of the logged reward.

    ``Q`` and ``V`` are trained by TorchRL's IQL critic losses (``qvalue_loss`` and the
    expectile ``value_loss``; IQL's own actor loss is not used); the score is the minimum
    of IQL's two target Q networks at the logged action, written to ``"q_score"``.
    ``filter_options`` (``kappa``, ``adaptive``, ``adapt_lambda``, ``kappa_min``) go to
    :class:`~drpo_rl.objectives.drpo.DRPOLoss`.
    """
    actor = net.actor(specs)
    q = net.qvalue(specs)
    value = net.value(specs)
    critic_loss = make_iql_loss(specs, actor, q, value, gamma, expectile=expectile)
    policy_loss = DRPOLoss(actor, **filter_options)
    policy_loss.set_keys(score="q_score")
    losses = {"policy": policy_loss, "critic": critic_loss}

    def logged_q(batch: TensorDictBase) -> torch.Tensor:
        values = []
        with torch.no_grad():
            for k in range(critic_loss.num_qvalue_nets):
                work = batch.select(*q.in_keys).copy()
                with critic_loss.target_qvalue_network_params[k].to_module(q):
                    value_k = q(work)["state_action_value"]
                if specs.discrete:  # [*B, num_items] -> the logged item's value, [*B, 1]
                    value_k = value_k.gather(-1, batch["action"].long().unsqueeze(-1))
                values.append(value_k)
        return torch.stack(values).min(0).values

    def compute(batch: TensorDictBase) -> dict[str, torch.Tensor]:
        batch = complete_terminal_transitions(batch)
        loss_qvalue, _ = critic_loss.qvalue_loss(batch)
        loss_value, _ = critic_loss.value_loss(batch)
        scored = batch.copy()
        scored["q_score"] = logged_q(batch)
        terms = scalar_terms(policy_loss(scored))
        terms.update(loss_qvalue=loss_qvalue, loss_value=loss_value)
        return terms

    updaters = (SoftUpdate(critic_loss, tau=tau),)
    # The policy loss's terms are unprefixed in compute's output: its update reads them.
    return AlgorithmParts(actor, losses, compute, updaters, state_updates=(policy_loss.update,))

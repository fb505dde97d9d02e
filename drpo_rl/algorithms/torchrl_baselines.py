"""Registry builders of the baselines TorchRL already implements, configured for offline
logs: BC (``BCLoss``), BPPO (``ClipPPOLoss``), IQL (``IQLLoss``/``DiscreteIQLLoss``), CQL
(``CQLLoss``/``DiscreteCQLLoss``), and PPO (``ClipPPOLoss`` with GAE) for online training."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.modules import QValueActor
from torchrl.objectives import (
    BCLoss,
    ClipPPOLoss,
    CQLLoss,
    DiscreteCQLLoss,
    DiscreteIQLLoss,
    IQLLoss,
    SoftUpdate,
)
from torchrl.objectives.utils import ValueEstimators

from drpo_rl.algorithms.algorithm import AlgorithmParts, loss_compute
from drpo_rl.algorithms.networks import NetworkOptions
from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY
from drpo_rl.models import PolicySpecs, categorical_bc_module

__all__ = ["build_bc", "build_bppo", "build_cql", "build_iql", "build_ppo", "make_iql_loss"]


def make_iql_loss(
    specs: PolicySpecs,
    actor: TensorDictModule,
    qvalue: TensorDictModule,
    value: TensorDictModule,
    gamma: float,
    **kwargs,
) -> IQLLoss | DiscreteIQLLoss:
    """TorchRL's IQL loss for the action form of ``specs`` (``DiscreteIQLLoss`` over
    categorical item ids, else ``IQLLoss``) with a TD(0) value estimator; ``kwargs``
    (``expectile``, ``temperature``) go to the loss. IQL and DRPO-Q's critics use it."""
    if specs.discrete:
        loss = DiscreteIQLLoss(actor, qvalue, value, action_space="categorical", **kwargs)
    else:
        loss = IQLLoss(actor, qvalue, value, **kwargs)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
    return loss


def build_bc(specs: PolicySpecs, net: NetworkOptions) -> AlgorithmParts:
    """Behaviour cloning with TorchRL's ``BCLoss`` on every logged sample.

    Embedding action: the Gaussian actor, negative log-likelihood of the logged action.
    Item id: ``BCLoss``'s cross-entropy path, which reads the prediction at the action key,
    on :func:`~drpo_rl.models.categorical_bc_module` of the actor (its logits network, the
    same parameters as the returned categorical policy).
    """
    actor = net.actor(specs)
    if specs.discrete:
        loss = BCLoss(categorical_bc_module(actor), loss_function="cross_entropy")
    else:
        loss = BCLoss(actor)
    return AlgorithmParts(actor, {"policy": loss}, loss_compute(loss))


def build_bppo(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    clip_epsilon: float = 0.2,
    entropy_coeff: float = 0.0,
    gamma: float = 0.99,
) -> AlgorithmParts:
    """Offline PPO: ``ClipPPOLoss`` whose old log-probability is the logged behaviour
    propensity (``"behavior_log_prob"``), advantage ``r + gamma V(s') (1 - terminated) -
    V(s)`` (TD(0); ``r - V(s)`` on bandit logs) from a ``V(s)`` trained by the same loss."""
    actor = net.actor(specs)
    loss = ClipPPOLoss(
        actor,
        net.value(specs),
        clip_epsilon=clip_epsilon,
        entropy_bonus=entropy_coeff > 0,
        entropy_coeff=entropy_coeff if entropy_coeff > 0 else None,
        loss_critic_type="l2",
    )
    loss.set_keys(sample_log_prob=BEHAVIOR_LOG_PROB_KEY)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
    compute = loss_compute(loss, transitions=True)
    return AlgorithmParts(actor, {"policy": loss}, compute)


def build_iql(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    expectile: float = 0.7,
    temperature: float = 3.0,
    gamma: float = 0.99,
    tau: float = 0.005,
) -> AlgorithmParts:
    """IQL: ``IQLLoss`` (embedding) / ``DiscreteIQLLoss`` (item ids); ``temperature`` is the
    inverse temperature of its advantage-weighted policy extraction (IQL paper: 3)."""
    actor = net.actor(specs)
    q, value = net.qvalue(specs), net.value(specs)
    loss = make_iql_loss(
        specs, actor, q, value, gamma, expectile=expectile, temperature=temperature
    )
    compute = loss_compute(loss, transitions=True)
    updaters = (SoftUpdate(loss, tau=tau),)
    return AlgorithmParts(actor, {"policy": loss}, compute, updaters)


def build_cql(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    min_q_weight: float = 1.0,
    gamma: float = 0.99,
    tau: float = 0.005,
) -> AlgorithmParts:
    """CQL: ``CQLLoss`` with the Gaussian actor (embedding action), or ``DiscreteCQLLoss``
    whose policy is the greedy ``QValueActor`` over per-item Q values (item ids).

    ``min_q_weight`` is the conservative penalty's weight (embedding action only; TorchRL's
    discrete CQL has a fixed weight of 1).
    """
    if specs.discrete:
        qnet = net.qvalue(specs).module
        policy = QValueActor(
            qnet, in_keys=["observation"], spec=specs.action_spec, action_space="categorical"
        )
        loss = DiscreteCQLLoss(policy, action_space="categorical", delay_value=True)
    else:
        policy = net.actor(specs)
        loss = CQLLoss(policy, net.qvalue(specs), min_q_weight=min_q_weight)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
    loss_terms = loss_compute(loss, transitions=True)

    def compute(batch: TensorDictBase) -> dict[str, torch.Tensor]:
        terms = loss_terms(batch)
        # CQLLoss also reports the actor's BC term, meant for a warm-up phase only: it is
        # logged under another name so that update() does not train on it.
        if "loss_actor_bc" in terms:
            terms["actor_bc_nll"] = terms.pop("loss_actor_bc")
        return terms

    updaters = (SoftUpdate(loss, tau=tau),)
    return AlgorithmParts(policy, {"policy": loss}, compute, updaters)


def build_ppo(
    specs: PolicySpecs,
    net: NetworkOptions,
    *,
    clip_epsilon: float = 0.2,
    entropy_coeff: float = 0.01,
    gamma: float = 0.99,
    lmbda: float = 0.95,
) -> AlgorithmParts:
    """Online PPO: ``ClipPPOLoss`` with GAE, for rollouts ``[num_envs, T]`` collected with
    ``algo.policy`` (which writes ``"action_log_prob"``) by a TorchRL collector against the
    session environment. Each ``update(rollout)`` recomputes GAE with the current critic."""
    actor = net.actor(specs, return_log_prob=True)
    loss = ClipPPOLoss(
        actor,
        net.value(specs),
        clip_epsilon=clip_epsilon,
        entropy_coeff=entropy_coeff,
        loss_critic_type="l2",
        normalize_advantage=True,
    )
    loss.make_value_estimator(ValueEstimators.GAE, gamma=gamma, lmbda=lmbda)
    return AlgorithmParts(actor, {"policy": loss}, loss_compute(loss), online=True)

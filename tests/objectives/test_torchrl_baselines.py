"""TorchRL's own losses as the registry configures them for offline bandit logs.

Checked against hand formulas on a small batch: BPPO's ratio uses the logged behaviour
propensity and the advantage reward - V(s); BC is the NLL / cross-entropy of the logged
action and trains the policy's own parameters; IQL's and CQL's TD targets reduce to the
logged reward on terminal transitions.
"""

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from drpo_rl.algorithms import build, complete_terminal_transitions
from drpo_rl.models import PolicySpecs

EMBEDDING = PolicySpecs(obs_dim=5, action_dim=3)
ITEMS = PolicySpecs(obs_dim=5, num_items=6)


def logs(specs, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    action = (
        torch.randint(specs.num_items, (n,), generator=g)
        if specs.discrete
        else torch.randn(n, specs.action_dim, generator=g)
    )
    return TensorDict(
        {
            "observation": torch.randn(n, specs.obs_dim, generator=g),
            "action": action,
            ("next", "reward"): torch.rand(n, 1, generator=g),
            ("next", "done"): torch.ones(n, 1, dtype=torch.bool),
            "behavior_log_prob": -1.0 - torch.rand(n, generator=g),
        },
        [n],
    )


@pytest.mark.parametrize("clip_epsilon", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("specs", [EMBEDDING, ITEMS], ids=["embedding", "item"])
def test_bppo_clips_the_ratio_to_the_logged_propensity(specs, clip_epsilon):
    torch.manual_seed(0)
    algo = build("bppo", specs, num_cells=16, clip_epsilon=clip_epsilon)
    loss = algo.loss_modules["policy"]
    loss.reduction = "none"
    batch = logs(specs)
    assert "behavior_log_prob" in loss.in_keys and "action_log_prob" not in loss.in_keys
    with torch.no_grad():
        log_prob = algo.policy.get_dist(batch.copy()).log_prob(batch["action"])
        value = loss.critic_network(batch.copy())["state_value"].squeeze(-1)
    advantage = batch["next", "reward"].squeeze(-1) - value
    ratio = (log_prob - batch["behavior_log_prob"]).exp()
    clipped = ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon)
    expected = -torch.minimum(ratio * advantage, clipped * advantage)
    out = loss(complete_terminal_transitions(batch))
    torch.testing.assert_close(out["loss_objective"], expected)
    torch.testing.assert_close(
        out["loss_critic"], (value - batch["next", "reward"].squeeze(-1)).square()
    )


def test_bc_item_ids_is_cross_entropy_on_the_policy_logits():
    torch.manual_seed(0)
    algo = build("bc", ITEMS, num_cells=16)
    batch = logs(ITEMS)
    logits = algo.policy(batch.copy())["logits"]
    expected = F.cross_entropy(logits, batch["action"])
    out = algo.loss_modules["policy"](batch)
    torch.testing.assert_close(out["loss_bc"], expected)
    out["loss_bc"].backward()
    for name, p in algo.policy.named_parameters():  # the deployed policy is what trains
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bc_embedding_is_gaussian_nll_of_the_logged_action():
    torch.manual_seed(0)
    algo = build("bc", EMBEDDING, num_cells=16)
    batch = logs(EMBEDDING)
    with torch.no_grad():
        expected = -algo.policy.get_dist(batch.copy()).log_prob(batch["action"]).mean()
    torch.testing.assert_close(algo.loss_modules["policy"](batch)["loss_bc"], expected)


@pytest.mark.parametrize("expectile", [0.5, 0.7, 0.9])
@pytest.mark.parametrize("specs", [EMBEDDING, ITEMS], ids=["embedding", "item"])
def test_iql_q_target_is_the_reward_and_value_loss_is_the_expectile(specs, expectile):
    torch.manual_seed(0)
    algo = build("iql", specs, num_cells=16, expectile=expectile)
    loss = algo.loss_modules["policy"]
    batch = complete_terminal_transitions(logs(specs))
    reward = batch["next", "reward"].squeeze(-1)
    q_params = loss.qvalue_network_params
    values = []
    with torch.no_grad():
        for k in range(loss.num_qvalue_nets):
            with q_params[k].to_module(loss.qvalue_network):
                q = loss.qvalue_network(batch.copy())["state_action_value"]
            if specs.discrete:
                q = q.gather(-1, batch["action"][:, None])
            values.append(q.squeeze(-1))
        v = loss.value_network(batch.copy())["state_value"].squeeze(-1)
    expected_q = sum(F.smooth_l1_loss(q, reward, reduction="none") for q in values).mean()
    torch.testing.assert_close(loss.qvalue_loss(batch)[0], expected_q)
    # targets start equal to the online Q nets, so the value loss uses min_k Q_k
    diff = torch.stack(values).min(0).values - v
    weight = torch.where(diff > 0, expectile, 1 - expectile)
    torch.testing.assert_close(loss.value_loss(batch)[0], (weight * diff.square()).mean())


def test_discrete_cql_target_is_the_reward_and_penalty_is_logsumexp_gap():
    torch.manual_seed(0)
    algo = build("cql", ITEMS, num_cells=16)
    batch = logs(ITEMS)
    with torch.no_grad():
        q = algo.policy(batch.copy())["action_value"]
    q_logged = q.gather(-1, batch["action"][:, None]).squeeze(-1)
    reward = batch["next", "reward"].squeeze(-1)
    out = algo.compute(batch)
    torch.testing.assert_close(out["loss_qvalue"], 0.5 * (q_logged - reward).square().mean())
    torch.testing.assert_close(out["loss_cql"], (torch.logsumexp(q, -1) - q_logged).mean())
    # the greedy policy is the arg-max of the same Q values
    torch.testing.assert_close(algo.policy(batch.copy())["action"], q.argmax(-1))


def test_cql_embedding_trains_on_its_terms_and_logs_the_bc_term():
    torch.manual_seed(0)
    algo = build("cql", EMBEDDING, num_cells=16, min_q_weight=5.0)
    assert algo.loss_modules["policy"].min_q_weight == 5.0
    terms = algo.compute(logs(EMBEDDING))
    assert "loss_actor_bc" not in terms and "actor_bc_nll" in terms
    assert {"loss_actor", "loss_qvalue", "loss_cql", "loss_alpha"} <= set(terms)

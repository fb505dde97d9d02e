"""The algorithm registry: every entry builds and trains on a tiny batch, options, errors."""

import pytest
import torch
from tensordict import TensorDict

from drpo_rl.algorithms import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LR,
    build,
    complete_terminal_transitions,
    list_algorithms,
    options,
)
from drpo_rl.models import PolicySpecs

REQUIRED = {
    "drpo", "drpo-exp", "drpo-q", "adapt-bc", "bc", "apg", "awr", "crr", "asymre",
    "bppo", "iql", "cql", "ppo",
}  # fmt: skip
EMBEDDING = PolicySpecs(obs_dim=6, action_dim=4)
ITEMS = PolicySpecs(obs_dim=6, num_items=7, item_embeddings=torch.randn(7, 4))


def logs_batch(specs, n=16, seed=0):
    """A batch in the offline-log format (bandit: every transition terminal)."""
    g = torch.Generator().manual_seed(seed)
    if specs.discrete:
        action = torch.randint(specs.num_items, (n,), generator=g)
    else:
        action = torch.randn(n, specs.action_dim, generator=g)
    return TensorDict(
        {
            "observation": torch.randn(n, specs.obs_dim, generator=g),
            "action": action,
            ("next", "reward"): torch.rand(n, 1, generator=g),
            ("next", "done"): torch.ones(n, 1, dtype=torch.bool),
            "behavior_log_prob": -torch.rand(n, generator=g) * 3,
            "behavior_agent": torch.randint(3, (n,), generator=g),
        },
        [n],
    )


def batch_for(algo, specs):
    batch = logs_batch(specs)
    if algo.online:  # on-policy rollout: actions and log-probs from the policy itself
        with torch.no_grad():
            batch = algo.policy(batch.exclude("action", "behavior_log_prob", "behavior_agent"))
        batch["next", "observation"] = torch.randn(batch.shape[0], specs.obs_dim)
        batch["next", "terminated"] = batch["next", "done"]
    return batch


def test_names():
    assert REQUIRED <= set(list_algorithms())
    assert list_algorithms() == sorted(list_algorithms())


def test_unknown_name_and_option_raise_listing_valid_ones():
    with pytest.raises(ValueError, match="unknown algorithm 'sac'; valid names: adapt-bc, apg"):
        build("sac", EMBEDDING)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['clip'\] .* clip_epsilon"):
        build("bppo", EMBEDDING, clip=0.1)
    with pytest.raises(ValueError, match="applies to item-id actions only"):
        build("bc", EMBEDDING, head="two_tower")


@pytest.mark.parametrize("name", sorted(REQUIRED))
@pytest.mark.parametrize("specs", [EMBEDDING, ITEMS], ids=["embedding", "item"])
def test_every_entry_builds_and_trains(name, specs):
    torch.manual_seed(0)
    algo = build(name, specs, num_cells=16)
    assert algo.name == name
    assert algo.hparams["lr"] == DEFAULT_LR and algo.batch_size == DEFAULT_BATCH_SIZE
    assert algo.online == (name == "ppo")
    for loss in algo.loss_modules.values():
        assert "behavior_agent" not in loss.in_keys
    batch = batch_for(algo, specs)
    before = batch.clone()
    policy_params = {k: p.detach().clone() for k, p in algo.policy.named_parameters()}
    for _ in range(3):
        metrics = algo.update(batch)
    assert (batch == before).all()  # update never writes into the caller's batch
    if not algo.online:  # same with logs that already hold the next state
        full = complete_terminal_transitions(batch)
        full_before = full.clone()
        algo.update(full)
        assert set(full.keys(True)) == set(full_before.keys(True))
        assert (full == full_before).all()
    assert any(k.startswith("loss_") for k in metrics)
    for key, value in metrics.items():
        assert value.ndim == 0 and torch.isfinite(value), key
        assert not value.requires_grad, key
    moved = [k for k, p in algo.policy.named_parameters() if not torch.equal(p, policy_params[k])]
    assert moved, "update() did not train the policy"
    # a learner never needs the behaviour agent id
    algo.update(batch.exclude("behavior_agent"))
    with torch.no_grad():
        action = algo.policy(batch.select("observation"))["action"]
    if specs.discrete:
        assert action.dtype == torch.int64 and action.shape == (16,)
        assert ((action >= 0) & (action < specs.num_items)).all()
    else:
        assert action.shape == (16, specs.action_dim)


def test_variant_hyper_parameters_reach_the_losses():
    assert build("awr", ITEMS, beta=0.05).loss_modules["policy"].beta == 0.05
    crr = build("crr", ITEMS, beta=5.0, form="binary").loss_modules["policy"]
    assert (crr.beta, crr.form) == (5.0, "binary")
    assert build("asymre", ITEMS).loss_modules["policy"].negative_scale == 0.1
    assert build("bppo", ITEMS, clip_epsilon=0.1).loss_modules["policy"].clip_epsilon == 0.1
    assert build("iql", EMBEDDING, expectile=0.9).loss_modules["policy"].expectile == 0.9
    assert build("drpo-q", ITEMS, expectile=0.5).loss_modules["critic"].expectile == 0.5
    assert build("drpo-exp", ITEMS).loss_modules["policy"].weighting == "exp"
    assert build("adapt-bc", ITEMS).loss_modules["policy"].weighting == "uniform"
    algo = build("drpo", ITEMS, lr=1e-3, batch_size=64)
    assert algo.optimizer.param_groups[0]["lr"] == 1e-3 and algo.batch_size == 64
    assert build("apg", ITEMS, baseline="mean").loss_modules["policy"].has_value is False
    assert options("crr")["form"] == "exp" and options("awr")["max_weight"] == 20.0


@pytest.mark.parametrize("name", ["drpo", "drpo-exp", "adapt-bc", "drpo-q"])
def test_update_adapts_kappa_after_the_step_from_the_steps_terms(name):
    algo = build(name, EMBEDDING, num_cells=8)
    loss = algo.loss_modules["policy"]
    batch = logs_batch(EMBEDDING)
    terms = algo.update(batch)
    assert terms["kappa"] == 0.5  # the value the step's forward used
    narrow = terms["kept_score_std"] < 0.5 * terms["batch_score_std"]
    torch.testing.assert_close(loss.kappa, torch.tensor(0.51 if narrow else 0.49))
    frozen = build(name, EMBEDDING, num_cells=8, adaptive=False)
    frozen.update(batch)
    assert frozen.loss_modules["policy"].kappa == 0.5


def test_two_tower_head_scores_against_catalogue():
    algo = build("drpo", ITEMS, head="two_tower", num_cells=16)
    scores = algo.policy.module[0].module
    torch.testing.assert_close(scores.item_embeddings, ITEMS.item_embeddings)
    algo.update(logs_batch(ITEMS))


def test_optimizer_sees_each_parameter_once_and_policy_is_the_trained_module():
    algo = build("drpo-q", EMBEDDING, num_cells=16)
    params = [p for g in algo.optimizer.param_groups for p in g["params"]]
    assert len({id(p) for p in params}) == len(params)
    actor_ids = {id(p) for p in algo.policy.parameters()}
    assert actor_ids <= {id(p) for p in params}


def test_target_networks_follow_the_critics():
    def flat(params):
        return torch.cat([v.detach().flatten() for v in params.values(True, True)])

    algo = build("iql", EMBEDDING, num_cells=16, tau=0.25)
    loss = algo.loss_modules["policy"]
    target0 = flat(loss.target_qvalue_network_params)
    torch.testing.assert_close(target0, flat(loss.qvalue_network_params))
    algo.update(logs_batch(EMBEDDING))
    q1 = flat(loss.qvalue_network_params)
    assert not torch.allclose(q1, target0)
    # Polyak step after the update: target <- (1 - tau) * target + tau * q
    torch.testing.assert_close(flat(loss.target_qvalue_network_params), 0.75 * target0 + 0.25 * q1)


def test_complete_terminal_transitions():
    batch = logs_batch(EMBEDDING).exclude("behavior_agent")
    full = complete_terminal_transitions(batch)
    torch.testing.assert_close(full["next", "observation"], batch["observation"])
    assert ("next", "observation") not in batch.keys(True)
    again = complete_terminal_transitions(full)
    assert again is not full and (again == full).all()
    batch["next", "done"][0] = False
    with pytest.raises(ValueError, match="not terminal"):
        complete_terminal_transitions(batch)
    with pytest.raises(ValueError, match=r"\('next', 'done'\)"):
        complete_terminal_transitions(batch.exclude(("next", "done")))


def test_ppo_trains_online_with_a_collector_on_the_session_env():
    from torchrl.collectors import Collector

    import envs

    env = envs.make_env("UserSession", num_envs=4, seed=0)
    algo = build("ppo", env, num_cells=16)
    # Our policies are feed-forward: no InitTracker/primer transforms to add to the env.
    collector = Collector(
        env,
        algo.policy,
        frames_per_batch=32,
        total_frames=64,
        auto_register_policy_transforms=False,
    )
    steps = 0
    for rollout in collector:
        assert rollout.batch_size == (4, 8)
        metrics = algo.update(rollout)
        assert torch.isfinite(metrics["loss_objective"]) and torch.isfinite(metrics["loss_critic"])
        steps += 1
    collector.shutdown()
    assert steps == 2


@pytest.mark.parametrize("specs", [EMBEDDING, ITEMS], ids=["embedding", "item"])
def test_drpo_q_scores_samples_by_the_min_target_q_of_the_logged_action(specs):
    torch.manual_seed(0)
    algo = build("drpo-q", specs, num_cells=16)
    critic = algo.loss_modules["critic"]
    assert "q_score" in algo.loss_modules["policy"].in_keys
    batch = complete_terminal_transitions(logs_batch(specs))
    values = []
    with torch.no_grad():
        for k in range(critic.num_qvalue_nets):
            with critic.target_qvalue_network_params[k].to_module(critic.qvalue_network):
                q = critic.qvalue_network(batch.copy())["state_action_value"]
            if specs.discrete:
                q = q.gather(-1, batch["action"][:, None])
            values.append(q.squeeze(-1))
    score = torch.stack(values).min(0).values
    terms = algo.compute(batch)
    torch.testing.assert_close(terms["batch_score_std"], score.std(correction=0))
    kept = score >= terms["threshold"]
    torch.testing.assert_close(terms["kept_fraction"], kept.float().mean())


def test_offline_algorithms_and_benchmark_configs_build_no_algorithm(monkeypatch):
    from drpo_rl.algorithms import offline_algorithms
    from drpo_rl.algorithms.algorithm import AlgorithmParts
    from drpo_rl.benchmark import make_config

    built = []
    real_init = AlgorithmParts.__init__

    def counted(self, *args, **kwargs):
        built.append(args)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(AlgorithmParts, "__init__", counted)
    assert offline_algorithms() == [name for name in list_algorithms() if name != "ppo"]
    make_config("paper")  # all 12 offline algorithms, validated
    assert built == []
    build("bc", EMBEDDING)  # the counter does count a build
    assert len(built) == 1


def test_the_online_flag_of_the_table_is_what_the_builder_makes():
    from drpo_rl.algorithms import ALGORITHMS

    assert [name for name, entry in ALGORITHMS.items() if entry.online] == ["ppo"]
    for name, entry in ALGORITHMS.items():
        assert build(name, EMBEDDING, num_cells=4).online is entry.online, name

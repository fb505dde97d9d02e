"""Every registry algorithm stays finite on degenerate batches and extreme network outputs.

Degenerate batches: all rewards equal, a single sample, ``kappa * N < 1`` (DRPO keeps one
sample, which is its own threshold), rewards of 0 and 1 only. Extreme outputs: the actor's
last layer scaled by 1e4 (huge means / logits) and the Gaussian log-std parameter driven to
+-1e4 (a runaway sigma, the curse of repulsion taken to the limit). For each, one
``algo.update`` must give finite loss terms, finite gradients on every trained parameter
and finite parameters afterwards.
"""

import functools
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict
from torch import nn

from drpo_rl.algorithms import build, list_algorithms
from drpo_rl.models import BoundedNormalScale, PolicySpecs, make_gaussian_actor
from drpo_rl.models.networks import LOG_STD_MAX
from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss

EMBEDDING = PolicySpecs(obs_dim=5, action_dim=3)
ITEMS = PolicySpecs(obs_dim=5, num_items=6, item_embeddings=torch.randn(6, 3))
SPECS = {"embedding": EMBEDDING, "item": ITEMS}
DRPO_FAMILY = ("drpo", "drpo-exp", "adapt-bc", "drpo-q")
# kappa * N < 1 for every batch below 20 samples: DRPO keeps a single sample.
SMALL_KAPPA = 0.05

DEGENERATE = {
    "all-equal": [0.3] * 12,
    "all-zero": [0.0] * 12,
    "single-sample": [0.7],
    "two-samples": [0.2, 0.8],
    "zeros-and-ones": [0.0, 1.0] * 6,
    "one-success": [0.0] * 11 + [1.0],
}


def make_algorithm(name, specs, seed=0):
    torch.manual_seed(seed)
    kwargs = {"kappa": SMALL_KAPPA} if name in DRPO_FAMILY else {}
    return build(name, specs, num_cells=16, **kwargs)


def logs_batch(specs, rewards, seed=0, obs_scale=1.0):
    """Bandit logs (every transition terminal) with the given rewards."""
    n = len(rewards)
    g = torch.Generator().manual_seed(seed)
    if specs.discrete:
        action = torch.randint(specs.num_items, (n,), generator=g)
    else:
        action = torch.randn(n, specs.action_dim, generator=g)
    return TensorDict(
        {
            "observation": torch.randn(n, specs.obs_dim, generator=g) * obs_scale,
            "action": action,
            ("next", "reward"): torch.as_tensor(rewards, dtype=torch.float32).reshape(n, 1),
            ("next", "done"): torch.ones(n, 1, dtype=torch.bool),
            "behavior_log_prob": -torch.rand(n, generator=g) * 3,
        },
        [n],
    )


def batch_for(algo, specs, rewards, seed=0, obs_scale=1.0):
    batch = logs_batch(specs, rewards, seed, obs_scale)
    if not algo.online:
        return batch
    # PPO trains on its own rollouts, [num_envs, time]: one env, len(rewards) steps.
    with torch.no_grad():
        batch = algo.policy(batch.exclude("action", "behavior_log_prob"))
    batch["next", "observation"] = torch.randn(batch.shape[0], specs.obs_dim)
    batch["next", "terminated"] = batch["next", "done"]
    return batch.unsqueeze(0)


def trained_parameters(algo):
    return [p for group in algo.optimizer.param_groups for p in group["params"]]


def assert_finite_step(algo, batch, context):
    """compute -> backward -> Adam step, every number finite along the way."""
    terms = algo.compute(batch)
    bad = sorted(k for k, v in terms.items() if not torch.isfinite(v).all())
    assert not bad, f"{context}: non-finite terms {bad}"
    total = sum(v for k, v in terms.items() if k.startswith("loss_"))
    algo.optimizer.zero_grad(set_to_none=True)
    total.backward()
    params = trained_parameters(algo)
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, f"{context}: no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads), f"{context}: non-finite gradient"
    algo.optimizer.step()
    for updater in algo.target_updaters:
        updater.step()
    assert all(torch.isfinite(p).all() for p in params), f"{context}: non-finite parameter"
    return terms


@pytest.mark.parametrize("specs_name", sorted(SPECS))
@pytest.mark.parametrize("name", list_algorithms())
def test_degenerate_batches_give_finite_losses_and_gradients(name, specs_name):
    specs = SPECS[specs_name]
    for case, rewards in DEGENERATE.items():
        algo = make_algorithm(name, specs)
        assert_finite_step(algo, batch_for(algo, specs, rewards), f"{name}/{specs_name}/{case}")


@pytest.mark.parametrize("weighting", ["drpo", "exp", "uniform"])
def test_drpo_keeps_one_sample_when_kappa_n_is_below_one(weighting):
    name = {"drpo": "drpo", "exp": "drpo-exp", "uniform": "adapt-bc"}[weighting]
    algo = make_algorithm(name, EMBEDDING)
    loss = algo.loss_modules["policy"]
    loss.eval()  # keep kappa fixed while reading the weights
    batch = logs_batch(EMBEDDING, [0.1, 0.9, 0.5, 0.3, 0.7])  # kappa * N = 0.25
    weights = loss.weights(batch)
    assert (weights > 0).sum() <= 1 and (weights >= 0).all()
    out = loss(batch)
    assert out["kept_fraction"] == pytest.approx(1 / 5)
    assert out["threshold"] == pytest.approx(0.9)
    if weighting == "drpo":  # the single kept sample is the threshold: advantage 0, no update
        assert out["loss_objective"] == 0
    else:  # exp / uniform: the best sample alone, at weight N / K = 5
        assert weights.tolist() == pytest.approx([0, 5, 0, 0, 0])


def scale_actor_outputs(algo, factor, log_std):
    """Multiply the actor's last linear layer by ``factor``; set its log-std parameter."""
    with torch.no_grad():
        last = [m for m in algo.policy.modules() if isinstance(m, nn.Linear)][-1]
        last.weight.mul_(factor)
        last.bias.mul_(factor)
        for module in algo.policy.modules():
            if isinstance(module, BoundedNormalScale) and log_std is not None:
                module.state_independent_scale.fill_(log_std)


EXTREMES = {
    "huge-mean-or-logits": (1e4, None),
    "huge-log-std": (1.0, 1e4),
    "tiny-log-std": (1.0, -1e4),
    "huge-mean-tiny-std": (1e4, -1e4),
    "log-std-past-float32-exp": (1.0, 100.0),
}


@pytest.mark.parametrize("specs_name", sorted(SPECS))
@pytest.mark.parametrize("name", list_algorithms())
def test_extreme_actor_outputs_give_finite_losses_and_gradients(name, specs_name):
    specs = SPECS[specs_name]
    rewards = torch.rand(12, generator=torch.Generator().manual_seed(1)).tolist()
    for case, (factor, log_std) in EXTREMES.items():
        if specs.discrete and log_std is not None:
            continue  # a categorical actor has no log-std
        algo = make_algorithm(name, specs)
        scale_actor_outputs(algo, factor, log_std)
        batch = batch_for(algo, specs, rewards)
        assert_finite_step(algo, batch, f"{name}/{specs_name}/{case}")


def test_gaussian_log_std_is_exact_below_the_ceiling_and_saturates_above():
    scale = BoundedNormalScale(3, init_value=-0.5)
    _, sigma = scale(torch.zeros(2, 3))
    torch.testing.assert_close(sigma, torch.full((2, 3), -0.5).exp(), rtol=0, atol=0)
    with torch.no_grad():
        scale.state_independent_scale.copy_(torch.tensor([5.0, LOG_STD_MAX, 1e6]))
    log_sigma = scale(torch.zeros(1, 3))[1].detach().log()[0]
    assert log_sigma[0] == pytest.approx(5.0, abs=1e-5)
    assert LOG_STD_MAX - 1 < log_sigma[1] < LOG_STD_MAX
    assert log_sigma[2] == pytest.approx(LOG_STD_MAX)
    # a runaway log-std still gets a gradient back towards the data, below the ceiling
    with torch.no_grad():
        scale.state_independent_scale.fill_(LOG_STD_MAX + 3)
    scale(torch.zeros(1, 3))[1].log().sum().backward()
    grad = scale.state_independent_scale.grad
    assert torch.isfinite(grad).all() and (grad > 0).all()
    # floor as in TensorDict's AddStateIndependentNormalScale, and the same state-dict key
    with torch.no_grad():
        scale.state_independent_scale.fill_(-1e6)
    assert scale(torch.zeros(1, 3))[1].min().item() == pytest.approx(1e-4)
    assert list(scale.state_dict()) == ["state_independent_scale"]
    with pytest.raises(ValueError, match="init_value must be < log_std_max"):
        BoundedNormalScale(3, init_value=25.0)


def test_gaussian_actor_samples_finite_actions_with_a_runaway_log_std():
    actor = make_gaussian_actor(EMBEDDING, num_cells=8)
    scale_module = actor.module[0].module[1]
    with torch.no_grad():
        scale_module.state_independent_scale.fill_(1e4)
    td = actor(TensorDict(observation=torch.randn(64, EMBEDDING.obs_dim), batch_size=[64]))
    assert torch.isfinite(td["action"]).all() and torch.isfinite(td["scale"]).all()
    log_prob = actor.get_dist(td).log_prob(td["action"])
    assert torch.isfinite(log_prob).all()


# ------------------------------------------------------------------ property tests
@functools.cache
def _cached_algorithm(name, specs_name):
    return make_algorithm(name, SPECS[specs_name])


reward_lists = st.lists(
    st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0, width=32), min_size=1, max_size=24
)


@pytest.mark.parametrize("specs_name", sorted(SPECS))
@pytest.mark.parametrize("name", list_algorithms())
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rewards=reward_lists,
    seed=st.integers(0, 2**16),
    obs_scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_random_batches_give_finite_losses_and_gradients(
    name, specs_name, rewards, seed, obs_scale
):
    algo = _cached_algorithm(name, specs_name)
    batch = batch_for(algo, SPECS[specs_name], rewards, seed=seed, obs_scale=obs_scale)
    assert_finite_step(algo, batch, f"{name}/{specs_name}")


@pytest.mark.parametrize("name", DRPO_FAMILY)
@settings(max_examples=25, deadline=None)
@given(
    scores=st.lists(
        st.sampled_from([0.0, 1.0]) | st.floats(-1e4, 1e4, width=32), min_size=1, max_size=40
    ),
    kappa=st.floats(SMALL_KAPPA, 1.0),
    num_groups=st.integers(0, 4),
    data=st.data(),
)
def test_drpo_weights_are_finite_and_never_negative(name, scores, kappa, num_groups, data):
    loss = _cached_algorithm(name, "item").loss_modules["policy"]
    n = len(scores)
    batch = logs_batch(ITEMS, [0.0] * n)
    score_key = loss.tensor_keys.score  # ("next", "reward"), or "q_score" for DRPO-Q
    batch[score_key] = torch.tensor(scores, dtype=torch.float32).reshape(n, 1)
    with torch.no_grad():
        loss.kappa.fill_(kappa)
    groups_key, groups = None, [0] * n
    if num_groups:
        groups = data.draw(st.lists(st.integers(0, num_groups - 1), min_size=n, max_size=n))
        batch["user"] = torch.tensor(groups)
        groups_key = "user"
    loss.set_keys(group=groups_key)
    try:
        weights = loss.weights(batch)
    finally:
        loss.set_keys(group=None)
    assert torch.isfinite(weights).all()
    assert (weights >= 0).all()
    # only a group's top max(1, floor(kappa * n_g)) samples may carry weight
    kept = sum(max(1, math.floor(kappa * groups.count(g) + 1e-4)) for g in set(groups))
    assert int((weights > 0).sum()) <= kept


# --------------------------------------------------------------- the loss boundary
def loss_inputs(algo):
    return {key for loss in algo.loss_modules.values() for key in loss.in_keys}


BAD_VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "1e30": 1e30}


@pytest.mark.parametrize("specs_name", sorted(SPECS))
@pytest.mark.parametrize("name", list_algorithms())
def test_bad_values_are_refused_naming_the_entry_and_rows(name, specs_name):
    specs = SPECS[specs_name]
    algo = make_algorithm(name, specs)
    clean = batch_for(algo, specs, [0.5] * 6)
    before = [p.detach().clone() for p in trained_parameters(algo)]
    keys = [("next", "reward"), "observation"]
    if "behavior_log_prob" in loss_inputs(algo):
        keys.append("behavior_log_prob")
    for key in keys:
        if key not in loss_inputs(algo):
            continue  # e.g. BC reads no reward: a NaN there cannot reach it
        for bad in BAD_VALUES.values():
            batch = clean.clone()
            rows = batch[key].reshape(-1, batch[key].shape[-1] if batch[key].ndim > 1 else 1)
            rows[1, 0] = bad
            rows[4, -1] = bad
            batch[key] = rows.reshape(batch[key].shape)
            with pytest.raises(ValueError, match=rf"^{name}: .*{re.escape(repr(key))}, got 2 of "):
                algo.update(batch)
    with pytest.raises(ValueError, match=rf"^{name}: expected a batch of at least one row"):
        algo.update(clean[..., :0])
    after = trained_parameters(algo)
    refused_trained = not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not refused_trained, "a refused batch changed the parameters"
    algo.update(clean)  # the clean batch still trains


@pytest.mark.parametrize("name", [n for n in list_algorithms() if n != "ppo"])
def test_large_finite_rewards_keep_parameters_and_optimiser_finite(name):
    """Rewards at the documented bound (1e15) do not overflow a critic's squared loss or
    Adam's squared gradients: parameters and optimiser state stay finite, and training on
    ordinary rewards afterwards still moves the parameters."""
    specs = SPECS["embedding"]
    torch.manual_seed(0)
    algo = build(name, specs, num_cells=16)  # the default kappa keeps several samples
    algo.update(batch_for(algo, specs, [1e15, -1e15, 0.0, 3e14] * 3))
    params = trained_parameters(algo)
    assert all(torch.isfinite(p).all() for p in params)
    state = [v for s in algo.optimizer.state.values() for v in s.values() if v.is_floating_point()]
    assert state and all(torch.isfinite(v).all() for v in state)
    before = [p.detach().clone() for p in params]
    algo.update(batch_for(algo, specs, [0.2, 0.9, 0.5] * 4))
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))


@pytest.mark.parametrize("name", list_algorithms())
def test_a_nan_on_a_masked_row_trains_only_where_the_losses_select_it_away(name):
    """The suite's weighted losses select masked rows away (a NaN there is harmless);
    TorchRL's multiply by the mask (NaN * 0 = NaN), so their algorithms refuse it."""
    specs = SPECS["item"]
    algo = make_algorithm(name, specs)
    batch = batch_for(algo, specs, [0.5] * 6)
    if ("next", "reward") not in loss_inputs(algo):
        return  # BC reads no reward
    mask = torch.tensor([True, True, False, True, True, True])
    batch["next", "reward"][..., 2, :] = math.nan
    batch["collector", "mask"] = mask.expand(batch.shape)
    if all(isinstance(loss, WeightedLogLikelihoodLoss) for loss in algo.loss_modules.values()):
        algo.update(batch)
        assert all(torch.isfinite(p).all() for p in trained_parameters(algo))
    else:
        with pytest.raises(ValueError, match=r"got 1 of 6 rows outside"):
            algo.update(batch)
    batch["collector", "mask"][..., 2] = True
    with pytest.raises(ValueError, match=r"got 1 of 6 rows outside"):
        algo.update(batch)


def test_the_losses_refuse_bad_batches_called_directly():
    from drpo_rl.objectives import DRPOLoss

    loss = make_algorithm("drpo", ITEMS).loss_modules["policy"]
    assert isinstance(loss, DRPOLoss)
    batch = logs_batch(ITEMS, [0.1, math.inf, 0.3])
    with pytest.raises(ValueError, match=r"^DRPOLoss: .*\('next', 'reward'\), got 1 of 3 rows"):
        loss(batch)
    with pytest.raises(ValueError, match="^DRPOLoss: expected a batch of at least one row"):
        loss(batch[:0])

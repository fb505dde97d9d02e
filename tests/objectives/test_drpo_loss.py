"""DRPOLoss: the paper's weights and gradients, adaptive kappa, variants, TorchRL conventions."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor
from torchrl.objectives import BCLoss

from drpo_rl.objectives import DRPOLoss, top_fraction_mask

OBS, ACT = 4, 3
REWARDS = [0.1, 0.9, 0.5, 0.3, 0.7, 0.2]


class LinearGaussian(nn.Module):
    """loc = W s (no bias), scale = exp(log_std) shared by all states: gradients by hand."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Linear(OBS, ACT, bias=False)
        self.log_std = nn.Parameter(torch.tensor([-0.5, 0.0, 0.3]))

    def forward(self, obs):
        return self.loc(obs), self.log_std.exp().expand(*obs.shape[:-1], ACT)


def linear_gaussian_actor(seed=0):
    torch.manual_seed(seed)
    return ProbabilisticActor(
        TensorDictModule(LinearGaussian(), in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=IndependentNormal,
    )


def mlp_actor(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(OBS, 16), nn.ReLU(), nn.Linear(16, 2 * ACT), NormalParamExtractor()
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=IndependentNormal,
    )


def make_batch(rewards, seed=0):
    n = len(rewards)
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=g),
            "action": torch.randn(n, ACT, generator=g),
            ("next", "reward"): torch.as_tensor(rewards, dtype=torch.float32).reshape(n, 1),
        },
        [n],
    )


def hand_drpo_weights():
    """kappa = 0.5 on REWARDS: K = 3 kept {0.9, 0.7, 0.5}, nu = 0.5, A = (0.4, 0.2, 0)."""
    advantage = torch.tensor([0.0, 0.4, 0.0, 0.0, 0.2, 0.0])
    std = math.sqrt(((0.4 - 0.2) ** 2 + 0.0 + (0.0 - 0.2) ** 2) / 3)  # ddof 0 over the kept 3
    return advantage / (std + 1e-8), 3


# ------------------------------------------------------------------ values and gradients
def test_gaussian_gradient_equals_hand_formula():
    actor = linear_gaussian_actor()
    loss = DRPOLoss(actor, kappa=0.5)
    data = make_batch(REWARDS)
    out = loss(data)
    out["loss_objective"].backward()
    w, k = hand_drpo_weights()
    module = actor.module[0].module
    with torch.no_grad():
        mu = data["observation"] @ module.loc.weight.T
        sigma = module.log_std.exp()
        diff = data["action"] - mu
        # d log pi / d mu = (a - mu) / sigma^2 ; d log pi / d log sigma = (a - mu)^2 / sigma^2 - 1
        grad_mu = -(w / k)[:, None] * diff / sigma**2
        grad_w = grad_mu.T @ data["observation"]
        grad_log_std = -((w / k)[:, None] * (diff**2 / sigma**2 - 1)).sum(0)
    torch.testing.assert_close(module.loc.weight.grad, grad_w)
    torch.testing.assert_close(module.log_std.grad, grad_log_std)
    assert out["kept_fraction"] == 0.5
    torch.testing.assert_close(out["threshold"], torch.tensor(0.5))


def test_reductions_and_weights_scale():
    actor = linear_gaussian_actor()
    data = make_batch(REWARDS)
    w, k = hand_drpo_weights()
    with torch.no_grad():
        log_prob = actor.get_dist(data.copy()).log_prob(data["action"])
    per_sample = -(w * len(REWARDS) / k) * log_prob
    losses = {
        r: DRPOLoss(actor, reduction=r, adaptive=False)(data)["loss_objective"]
        for r in ("none", "mean", "sum")
    }
    torch.testing.assert_close(losses["none"], per_sample)
    torch.testing.assert_close(losses["mean"], -(w * log_prob).sum() / k)
    torch.testing.assert_close(losses["sum"], per_sample.sum())
    weights = DRPOLoss(actor).weights(data)
    torch.testing.assert_close(weights, w * len(REWARDS) / k)
    assert not weights.requires_grad


def test_exp_and_uniform_weightings():
    actor = linear_gaussian_actor()
    data = make_batch(REWARDS)
    kept = torch.tensor([0.0, 1, 1, 0, 1, 0])
    r = torch.tensor(REWARDS)
    exp_w = DRPOLoss(actor, weighting="exp", beta=0.05).weights(data)
    expected = torch.exp((r - 0.7) / 0.05) * kept * 2  # mean of kept = 0.7, N/K = 2
    torch.testing.assert_close(exp_w, expected)
    capped = DRPOLoss(actor, weighting="exp", beta=0.01, weight_cap=100.0).weights(data)
    torch.testing.assert_close(capped.max(), torch.tensor(200.0))  # cap 100 times N/K = 2
    torch.testing.assert_close(DRPOLoss(actor, weighting="uniform").weights(data), kept * 2)


def test_uniform_weighting_is_torchrl_bc_on_the_kept_samples():
    actor = mlp_actor()
    data = make_batch(REWARDS)
    ours = DRPOLoss(actor, weighting="uniform", adaptive=False)(data)["loss_objective"]
    bc = BCLoss(actor)(data[torch.tensor([1, 2, 4])])["loss_bc"]
    torch.testing.assert_close(ours, bc)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(
        st.sampled_from([0.0, 0.5, 1.0, -2.0]) | st.floats(-1e3, 1e3), min_size=1, max_size=40
    ),
    kappa=st.floats(0.05, 1.0),
    weighting=st.sampled_from(["drpo", "exp", "uniform"]),
)
def test_weights_never_negative_and_finite(scores, kappa, weighting):
    actor = linear_gaussian_actor()
    loss = DRPOLoss(actor, kappa=kappa, weighting=weighting, adaptive=False)
    data = make_batch(scores)
    w = loss.weights(data)
    n = len(scores)
    k = max(1, math.floor(kappa * n + 1e-4))
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    assert (w > 0).sum() <= k
    out = loss(data)
    assert torch.isfinite(out["loss_objective"])
    assert 0 <= out["ess"] <= k + 1e-3


@pytest.mark.parametrize("rewards", [[0.3] * 10, [1.0], [0.2, 0.8]])
def test_degenerate_batches_are_finite(rewards):
    loss = DRPOLoss(mlp_actor(), kappa=0.05)
    out = loss(make_batch(rewards))
    out["loss_objective"].backward()
    for value in out.values():
        assert torch.isfinite(value).all()
    # A single kept sample is the boundary itself: weight 0, so no update at all.
    assert out["loss_objective"] == 0


# -------------------------------------------------------------------------- adaptive
def narrow_top_batch():
    # The kept half sits in a tight cluster: kept spread << batch spread -> kappa grows.
    return make_batch([1.0, 1.01, 0.99, 1.0, 0.0, -1.0, 0.5, -0.5])


def wide_top_batch():
    # The kept half holds an outlier: kept spread > half the batch spread -> kappa shrinks.
    return make_batch([100.0, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9])


@pytest.mark.parametrize(("batch_fn", "factor"), [(narrow_top_batch, 1.02), (wide_top_batch, 0.98)])
def test_adaptive_rule_moves_kappa_the_right_way(batch_fn, factor):
    loss = DRPOLoss(mlp_actor(), kappa=0.5)
    out = loss(batch_fn())
    narrow = out["kept_score_std"] < 0.5 * out["batch_score_std"]
    assert bool(narrow) == (factor > 1)
    torch.testing.assert_close(out["kappa"], torch.tensor(0.5))
    torch.testing.assert_close(loss.kappa, torch.tensor(0.5))  # the forward is pure
    loss.update(out)
    torch.testing.assert_close(loss.kappa, torch.tensor(0.5 * factor))


def test_adaptive_kappa_is_clipped_and_only_moved_by_update():
    loss = DRPOLoss(mlp_actor(), kappa=0.495, kappa_max=0.5)
    loss.update(loss(narrow_top_batch()))  # keeps 3 of 8: the tight cluster, kappa grows
    assert loss.kappa == 0.5  # past the cap: clipped
    loss.kappa = 0.051
    # K = 5 of 100 rows holds two outliers: the kept spread is wide, kappa shrinks to the floor.
    loss.update(loss(make_batch([100.0, 50.0] + [1.0] * 98)))
    assert loss.kappa == pytest.approx(0.05)
    loss.kappa = 0.3
    for _ in range(3):  # forwards alone, in any mode, change nothing
        loss(wide_top_batch())["loss_objective"].backward()
    loss.eval()
    loss(wide_top_batch())
    assert loss.kappa == pytest.approx(0.3)
    fixed = DRPOLoss(mlp_actor(), kappa=0.3, adaptive=False)
    fixed.update(fixed(wide_top_batch()))
    assert fixed.kappa == pytest.approx(0.3)


def test_kappa_is_a_buffer_in_state_dict_and_settable():
    loss = DRPOLoss(mlp_actor(seed=0), kappa=0.5)
    for _ in range(3):
        loss.update(loss(wide_top_batch()))
    state = loss.state_dict()
    assert "kappa" in state and state["kappa"] == pytest.approx(0.5 * 0.98**3)
    other = DRPOLoss(mlp_actor(seed=9), kappa=0.2)
    other.load_state_dict(state)
    assert other.kappa == pytest.approx(0.5 * 0.98**3)
    data = make_batch(REWARDS)
    loss.eval()
    other.eval()
    torch.testing.assert_close(loss(data)["loss_objective"], other(data)["loss_objective"])
    buffer = other.kappa
    other.kappa = 0.25
    assert other.kappa is buffer and buffer == 0.25  # in place: compiled graphs see it


def test_kappa_smaller_batch_fraction_changes_the_kept_set():
    loss = DRPOLoss(mlp_actor(), kappa=0.5, adaptive=False)
    loss.kappa = 1 / 3
    out = loss(make_batch(REWARDS))
    torch.testing.assert_close(out["kept_fraction"], torch.tensor(1 / 3))
    torch.testing.assert_close(out["threshold"], torch.tensor(0.7))


# -------------------------------------------------------------------------- variants
def test_drpo_q_uses_the_critic_not_the_reward():
    torch.manual_seed(3)
    q_net = nn.Linear(OBS + ACT, 1)
    critic = TensorDictModule(
        lambda obs, act: q_net(torch.cat([obs, act], -1)),
        in_keys=["observation", "action"],
        out_keys=["state_action_value"],
    )
    critic.q_net = q_net  # register the parameters with the module
    loss = DRPOLoss(mlp_actor(), critic_network=critic, adaptive=False)
    assert ("next", "reward") not in loss.in_keys
    data = make_batch(REWARDS)
    with torch.no_grad():
        q = q_net(torch.cat([data["observation"], data["action"]], -1)).squeeze(-1)
    reference = DRPOLoss(mlp_actor(), adaptive=False)
    data_q = data.clone()
    data_q["next", "reward"] = q.unsqueeze(-1)
    torch.testing.assert_close(loss.weights(data), reference.weights(data_q))
    shuffled = data.clone()
    shuffled["next", "reward"] = shuffled["next", "reward"].flip(0)
    torch.testing.assert_close(loss(data)["loss_objective"], loss(shuffled)["loss_objective"])
    loss(data)["loss_objective"].backward()
    assert all(p.grad is None for p in loss.critic_network_params.values(True, True))
    assert q_net.weight.grad is None


def test_categorical_actor_over_item_ids():
    n_items = 6
    torch.manual_seed(0)
    logits_net = nn.Linear(OBS, n_items)
    actor = ProbabilisticActor(
        TensorDictModule(logits_net, in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
    )
    data = make_batch(REWARDS)
    data["action"] = torch.tensor([0, 5, 2, 2, 3, 1])
    out = DRPOLoss(actor, kappa=0.5)(data)
    w, k = hand_drpo_weights()
    with torch.no_grad():
        log_p = torch.log_softmax(logits_net(data["observation"]), -1)[
            torch.arange(6), data["action"]
        ]
    torch.testing.assert_close(out["loss_objective"], -(w * log_p).sum() / k)


def test_group_filter_within_each_user():
    # Two users; each keeps its own top half, whatever the other user's rewards.
    data = make_batch([0.1, 0.2, 0.3, 0.4, 10.0, 11.0, 12.0, 13.0])
    data["user_id"] = torch.tensor([7, 7, 7, 7, 2, 2, 2, 2]).unsqueeze(-1)
    loss = DRPOLoss(mlp_actor(), kappa=0.5, adaptive=False)
    loss.set_keys(group="user_id")
    assert "user_id" in loss.in_keys
    out = loss(data)
    w = loss.weights(data)
    assert ((w > 0) == torch.tensor([0, 0, 0, 1, 0, 0, 0, 1], dtype=torch.bool)).all()
    # A = (0, 0, 0.1, 0.2 | 0, 0, 1, 2) restricted to kept; std over the four kept A values.
    advantage = torch.tensor([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0])
    kept_a = torch.tensor([0.0, 0.1, 0.0, 1.0])
    expected = advantage / (kept_a.std(correction=0) + 1e-8) * 2
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(out["threshold"], torch.tensor((0.3 * 4 + 12.0 * 4) / 8))
    without = DRPOLoss(mlp_actor(), kappa=0.5, adaptive=False).weights(data)
    assert (without[:4] == 0).all()  # globally, user 7's rows are never kept
    bad = data.clone()
    bad["user_id"] = bad["user_id"].float()
    with pytest.raises(ValueError, match="integer ids"):
        loss(bad)


def test_groups_that_keep_only_their_boundary_row_are_reported():
    # Four 4-row users: kappa 0.49 keeps floor(1.96) = 1 row per user, its best, which is
    # also its threshold: every weight is 0 and the diagnostic says so for every group.
    rewards = torch.rand(16, generator=torch.Generator().manual_seed(0)).tolist()
    data = make_batch(rewards)
    data["user_id"] = torch.arange(16) // 4
    loss = DRPOLoss(mlp_actor(), kappa=0.49)
    loss.set_keys(group="user_id")
    out = loss(data)
    torch.testing.assert_close(out["kept_fraction"], torch.tensor(0.25))
    assert out["weightless_groups"] == 1 and out["ess"] == 0 and out["loss_objective"] == 0
    scores = data["next", "reward"].squeeze(-1)
    kept, _ = top_fraction_mask(scores, 0.49, data["user_id"])
    best = scores.reshape(4, 4).argmax(-1) + torch.arange(0, 16, 4)
    assert kept.nonzero().squeeze(-1).tolist() == best.tolist()  # each user's best row
    # kappa 0.5 keeps 2 rows per user: each user's best row now clears its threshold.
    loss.kappa = 0.5
    out = loss(data)
    assert out["weightless_groups"] == 0 and out["ess"] > 0
    # One user of four with tied rewards: a quarter of the groups carries no weight.
    tied = data.clone()
    tied["next", "reward"][:4] = 0.5
    torch.testing.assert_close(loss(tied)["weightless_groups"], torch.tensor(0.25))
    # Without groups the batch is one group.
    plain = DRPOLoss(mlp_actor(), kappa=0.5)
    assert plain(data)["weightless_groups"] == 0
    assert plain(make_batch([1.0] * 8))["weightless_groups"] == 1


def test_two_identical_calls_give_identical_outputs():
    loss = DRPOLoss(mlp_actor(), kappa=0.5)
    data = make_batch(REWARDS)
    first = loss(data)
    first["loss_objective"].backward()
    second = loss(data)
    for key in loss.out_keys:
        assert torch.equal(first[key], second[key]), key
    loss.update(second)
    assert loss.kappa != 0.5 and not torch.equal(loss(data)["kappa"], first["kappa"])


# ------------------------------------------------------------------------ conventions
def test_constructor_validation():
    actor = mlp_actor()
    with pytest.raises(ValueError) as err:
        DRPOLoss(actor, kappa=0.01)
    assert str(err.value) == "kappa: expected a finite number in [0.05, 1], got 0.01"
    with pytest.raises(ValueError, match="kappa_min"):
        DRPOLoss(actor, kappa_min=0.6, kappa_max=0.5)
    with pytest.raises(ValueError) as err:
        DRPOLoss(actor, weighting="softmax")
    assert str(err.value) == "weighting: expected one of ['drpo', 'exp', 'uniform'], got 'softmax'"
    with pytest.raises(ValueError, match="^beta: expected a finite number > 0, got 0.0$"):
        DRPOLoss(actor, beta=0.0)
    with pytest.raises(ValueError, match="^eps: expected a finite number >= 0, got -1.0$"):
        DRPOLoss(actor, eps=-1.0)
    with pytest.raises(ValueError, match="adapt_down"):
        DRPOLoss(actor, adapt_up=0.9)


def test_keys_and_outputs():
    loss = DRPOLoss(mlp_actor())
    assert loss.out_keys == [
        "loss_objective",
        "ess",
        "kappa",
        "threshold",
        "kept_fraction",
        "kept_score_std",
        "batch_score_std",
        "weightless_groups",
    ]
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(advantage="adv")
    loss.set_keys(score="my_score")
    assert set(loss.in_keys) == {"observation", "action", "my_score"}
    out = loss(
        TensorDict(
            {
                "observation": torch.randn(5, OBS),
                "action": torch.randn(5, ACT),
                "my_score": torch.randn(5),
            },
            [5],
        )
    )
    assert set(out.keys()) == set(loss.out_keys)
    assert all(v.shape == () for v in out.values())


def test_reproducible_under_seed():
    def run():
        loss = DRPOLoss(mlp_actor(seed=4))
        opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
        for step in range(5):
            data = make_batch(
                torch.rand(16, generator=torch.Generator().manual_seed(step)).tolist()
            )
            out = loss(data)
            out["loss_objective"].backward()
            opt.step()
            opt.zero_grad()
            loss.update(out)
        return loss.kappa.clone(), torch.cat([p.detach().flatten() for p in loss.parameters()])

    (k1, p1), (k2, p2) = run(), run()
    assert k1 == k2 and torch.equal(p1, p2)


# ---------------------------------------------------------------------------- compile
def compiled_matches_eager(backend):
    def make():
        loss = DRPOLoss(mlp_actor(seed=1))
        return loss, torch.optim.Adam(loss.parameters(), lr=1e-2)

    eager_loss, eager_opt = make()
    loss, opt = make()
    # The loss forward (filter, weights, log-prob) is one graph, and so is the in-place
    # kappa update; backward runs through AOTAutograd's compiled backward. The optimizer
    # stays eager: torch.optim inserts graph breaks of its own by design.
    forward = torch.compile(loss, fullgraph=True, backend=backend)
    update = torch.compile(loss.update, fullgraph=True, backend=backend)
    batches = [narrow_top_batch(), wide_top_batch(), narrow_top_batch()]
    for data in batches:
        out = forward(data)
        out["loss_objective"].backward()
        opt.step()
        opt.zero_grad()
        update(out)
        ref = eager_loss(data)
        ref["loss_objective"].backward()
        eager_opt.step()
        eager_opt.zero_grad()
        eager_loss.update(ref)
        for key in loss.out_keys:
            torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loss.kappa, eager_loss.kappa)
    torch.testing.assert_close(loss.kappa, torch.tensor(0.5 * 1.02 * 0.98 * 1.02))
    for p, q in zip(loss.parameters(), eager_loss.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5)


def test_update_step_compiles_fullgraph_aot_eager():
    torch._dynamo.reset()
    compiled_matches_eager("aot_eager")


@pytest.mark.slow
# Inductor's own code generation goes through torch.jit.script_method, deprecated in torch 2.13.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_update_step_compiles_fullgraph_inductor():
    torch._dynamo.reset()
    compiled_matches_eager("inductor")


def test_group_filter_traces_as_one_graph():
    torch._dynamo.reset()
    loss = DRPOLoss(mlp_actor(seed=2), kappa=0.5)
    loss.set_keys(group="user_id")
    eager = DRPOLoss(mlp_actor(seed=2), kappa=0.5, adaptive=False)
    eager.set_keys(group="user_id")
    data = make_batch(torch.rand(40, generator=torch.Generator().manual_seed(0)).tolist())
    data["user_id"] = torch.arange(40) % 6
    out = torch.compile(loss, fullgraph=True, backend="eager")(data)
    ref = eager(data)
    for key in loss.out_keys:
        torch.testing.assert_close(out[key], ref[key])

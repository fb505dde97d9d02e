"""TorchRL conventions of the advantage-weighted losses (APG, AWR, CRR, AsymRe), shared base.

Each loss's own weight rule is checked in its test file; here: keys, reductions, the value
network's loss. Gradient routing, input untouched, keyword call and state_dict are checked
for every loss in test_loss_properties.py.
"""

import pytest
import torch
from tensordict import TensorDict

from drpo_rl.models import PolicySpecs, make_gaussian_actor, make_value_critic
from drpo_rl.objectives.advantage import AdvantageWeightedLoss, exp_advantage_weights
from drpo_rl.objectives.apg import APGLoss
from drpo_rl.objectives.asymre import AsymReLoss
from drpo_rl.objectives.awr import AWRLoss
from drpo_rl.objectives.crr import CRRLoss

SPECS = PolicySpecs(obs_dim=5, action_dim=3)
LOSSES = [APGLoss, AWRLoss, CRRLoss, AsymReLoss]


def _batch(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(n, 5, generator=g),
            "action": torch.randn(n, 3, generator=g),
            ("next", "reward"): torch.rand(n, 1, generator=g),
        },
        [n],
    )


def _loss(cls, value=True, **kw):
    torch.manual_seed(0)
    actor = make_gaussian_actor(SPECS, num_cells=16)
    critic = make_value_critic(SPECS, num_cells=16) if value else None
    return cls(actor, critic, **kw)


def test_base_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        AdvantageWeightedLoss(make_gaussian_actor(SPECS))


@pytest.mark.parametrize("cls", LOSSES)
def test_keys(cls):
    loss = _loss(cls)
    assert set(loss.in_keys) == {"observation", "action", ("next", "reward")}
    assert loss.out_keys == [
        "loss_objective",
        "ess",
        "advantage_mean",
        "advantage_std",
        "negative_advantage_fraction",
        "loss_value",
    ]
    assert "loss_value" not in _loss(cls, value=False).out_keys
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(advantage="x")
    loss.set_keys(score="shaped_reward")
    assert ("next", "reward") not in loss.in_keys and "shaped_reward" in loss.in_keys
    loss.set_keys(value="v")  # the value network writes "state_value", not "v"
    data = _batch()
    data["shaped_reward"] = data["next", "reward"]
    with pytest.raises(KeyError, match="did not write 'v'"):
        loss(data)


@pytest.mark.parametrize("cls", LOSSES)
def test_reductions_and_hand_computed_losses(cls):
    data = _batch()
    losses = {r: _loss(cls, reduction=r) for r in ("none", "mean", "sum")}
    loss = losses["none"]
    with torch.no_grad():
        value = loss.value_network(data.copy())["state_value"].squeeze(-1)
        log_prob = loss.actor_network.get_dist(data.copy()).log_prob(data["action"])
    reward = data["next", "reward"].squeeze(-1)
    advantage = reward - value
    torch.testing.assert_close(loss.advantage(data), advantage)
    weights = loss.weights(data)
    out = {r: m(data) for r, m in losses.items()}
    torch.testing.assert_close(out["none"]["loss_objective"], -(weights * log_prob))
    torch.testing.assert_close(out["none"]["loss_value"], (value - reward).square())
    for key in ("loss_objective", "loss_value"):
        assert out["none"][key].shape == (10,)
        torch.testing.assert_close(out["mean"][key], out["none"][key].mean())
        torch.testing.assert_close(out["sum"][key], out["none"][key].sum())
    torch.testing.assert_close(out["mean"]["advantage_mean"], advantage.mean())
    torch.testing.assert_close(
        out["mean"]["negative_advantage_fraction"], (advantage < 0).float().mean()
    )


@pytest.mark.parametrize("cls", LOSSES)
def test_batch_mean_baseline_without_value_network(cls):
    loss = _loss(cls, value=False)
    data = _batch()
    reward = data["next", "reward"].squeeze(-1)
    torch.testing.assert_close(loss.advantage(data), reward - reward.mean())
    assert not any(n.startswith("value_network") for n, _ in loss.named_parameters())


def test_exp_weights_cap_without_overflow():
    adv = torch.tensor([-1e4, 0.0, 1e4])
    w = exp_advantage_weights(adv, beta=0.05, max_weight=20.0)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0, 20.0]))

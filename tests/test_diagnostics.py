"""The phantom-gradient monitor against hand-computed score-function gradients."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor

from drpo_rl.diagnostics import PhantomGradientMonitor
from drpo_rl.objectives import DRPOLoss
from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss

OBS, ACT, N = 4, 2, 10


class CentredScoreLoss(WeightedLogLikelihoodLoss):
    """APG-like signed weights w = score - mean(score): half the batch repels."""

    def _weights(self, score, valid, tensordict):
        return score - score.mean(), {}


class GaussianHead(nn.Module):
    def __init__(self, log_std):
        super().__init__()
        self.loc = nn.Linear(OBS, ACT)
        self.log_std = nn.Parameter(torch.full((ACT,), float(log_std)))

    def forward(self, obs):
        return self.loc(obs), self.log_std.exp().expand(*obs.shape[:-1], ACT)


def gaussian_actor(log_std=0.0, seed=0):
    torch.manual_seed(seed)
    return ProbabilisticActor(
        TensorDictModule(GaussianHead(log_std), in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=IndependentNormal,
    )


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(N, OBS, generator=g),
            "action": 3 * torch.randn(N, ACT, generator=g),
            ("next", "reward"): torch.rand(N, 1, generator=g),
        },
        [N],
    )


def hand_branches(actor, data):
    head = actor.module[0].module
    with torch.no_grad():
        mu = head.loc(data["observation"])
        sigma = head.log_std.exp()
        w = data["next", "reward"].squeeze(-1)
        w = w - w.mean()
        diff = data["action"] - mu
        # Per-sample gradient of -(1/N) w log pi on the two branches.
        g_mu = -(w / N)[:, None] * diff / sigma**2
        g_log_sigma = -(w / N)[:, None] * (diff**2 / sigma**2 - 1)
    neg = w < 0
    return {
        "grad_loc_neg": g_mu[neg].norm(),
        "grad_loc_pos": g_mu[~neg].norm(),
        "grad_log_scale_neg": g_log_sigma[neg].norm(),
        "grad_log_scale_pos": g_log_sigma[~neg].norm(),
        "mu_action_distance": diff.norm(dim=-1).mean(),
        "frac_negative": neg.float().mean(),
    }


def test_branch_norms_equal_the_hand_formulas():
    actor = gaussian_actor(log_std=-0.3)
    data = make_batch()
    report = PhantomGradientMonitor(CentredScoreLoss(actor))(data)
    for key, expected in hand_branches(actor, data).items():
        torch.testing.assert_close(report[key], expected, msg=key)
    torch.testing.assert_close(report["scale_mean"], torch.tensor(0.3).neg().exp())
    assert 0 < report["frac_negative"] < 1
    torch.testing.assert_close(report["frac_negative"] + report["frac_positive"], torch.tensor(1.0))


def test_parameter_parts_add_up_to_the_loss_gradient():
    actor = gaussian_actor()
    loss = CentredScoreLoss(actor)
    data = make_batch()
    report = PhantomGradientMonitor(loss)(data)
    assert all(p.grad is None for p in loss.parameters())  # the monitor leaves no .grad
    loss(data)["loss_objective"].backward()
    full = torch.cat([p.grad.flatten() for p in loss.parameters()]).norm()
    # |g_neg + g_pos| <= |g_neg| + |g_pos|, and each part is non-trivial here.
    assert full <= report["grad_params_neg"] + report["grad_params_pos"] + 1e-6
    assert report["grad_params_neg"] > 0 and report["grad_params_pos"] > 0


def test_repulsive_gradient_grows_like_inverse_variance():
    data = make_batch()
    wide = PhantomGradientMonitor(CentredScoreLoss(gaussian_actor(log_std=0.0)))(data)
    narrow = PhantomGradientMonitor(CentredScoreLoss(gaussian_actor(log_std=-1.0)))(data)
    # Same mean, sigma divided by e: the mean-branch gradient is multiplied by e^2.
    ratio = narrow["grad_loc_neg"] / wide["grad_loc_neg"]
    torch.testing.assert_close(ratio, torch.tensor(torch.e**2))


def test_drpo_has_no_repulsive_part_and_keeps_kappa():
    loss = DRPOLoss(gaussian_actor(), kappa=0.5)
    monitor = PhantomGradientMonitor(loss)
    for _ in range(3):
        report = monitor(make_batch())
    assert report["frac_negative"] == 0
    assert report["grad_loc_neg"] == 0 and report["grad_log_scale_neg"] == 0
    assert report["grad_params_neg"] == 0 and report["grad_params_pos"] > 0
    assert loss.kappa == 0.5  # the monitor is not a training step
    curves = monitor.curves()
    assert curves.shape == (3,) and curves["grad_loc_pos"].shape == (3,)


def test_categorical_actor_logits_branch():
    torch.manual_seed(0)
    logits = nn.Linear(OBS, 5)
    actor = ProbabilisticActor(
        TensorDictModule(logits, in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
    )
    data = make_batch()
    data["action"] = torch.arange(N) % 5
    report = PhantomGradientMonitor(CentredScoreLoss(actor), keep_history=False)(data)
    with torch.no_grad():
        p = torch.softmax(logits(data["observation"]), -1)
        w = data["next", "reward"].squeeze(-1)
        w = w - w.mean()
        # d log softmax(z)_a / dz = onehot(a) - p
        g = -(w / N)[:, None] * (nn.functional.one_hot(data["action"], 5) - p)
    torch.testing.assert_close(report["grad_logits_neg"], g[w < 0].norm())
    torch.testing.assert_close(report["grad_logits_pos"], g[w >= 0].norm())
    torch.testing.assert_close(
        report["logged_action_prob"], p[torch.arange(N), data["action"]].mean()
    )
    assert "mu_action_distance" not in report.keys()


def test_rejects_other_losses_and_empty_curves():
    with pytest.raises(ValueError, match="WeightedLogLikelihoodLoss"):
        PhantomGradientMonitor(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no report recorded"):
        PhantomGradientMonitor(DRPOLoss(gaussian_actor())).curves()

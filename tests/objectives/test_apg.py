"""APGLoss: weights are the signed advantages reward - V(s)."""

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from drpo_rl.models import PolicySpecs, make_categorical_actor
from drpo_rl.objectives.apg import APGLoss

REWARD = torch.tensor([0.9, 0.2, 0.5, 0.0])
BASELINE = torch.tensor([0.5, 0.5, 0.1, 0.3])


def hand_value_network():
    """V(s) = observation[..., 0], so the baseline is set by hand."""
    linear = nn.Linear(3, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        linear.bias.zero_()
    return TensorDictModule(linear, in_keys=["observation"], out_keys=["state_value"])


def hand_batch():
    obs = torch.stack([BASELINE, torch.ones(4), -torch.ones(4)], -1)
    return TensorDict(
        {
            "observation": obs,
            "action": torch.tensor([0, 1, 2, 3]),
            ("next", "reward"): REWARD[:, None],
        },
        [4],
    )


def test_weights_are_signed_advantages():
    actor = make_categorical_actor(PolicySpecs(obs_dim=3, num_items=4))
    loss = APGLoss(actor, hand_value_network())
    expected = REWARD - BASELINE
    torch.testing.assert_close(loss.weights(hand_batch()), expected)
    out = loss(hand_batch())
    torch.testing.assert_close(out["negative_advantage_fraction"], torch.tensor(0.5))
    with torch.no_grad():
        log_prob = actor.get_dist(hand_batch()).log_prob(torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out["loss_objective"], -(expected * log_prob).mean())


def test_negative_advantage_gradient_pushes_mean_away_from_the_action():
    # One sample, A < 0: a gradient step on the loss must move the Gaussian mean away
    # from the logged action (the repulsion the paper describes).
    from drpo_rl.models import make_gaussian_actor

    torch.manual_seed(0)
    actor = make_gaussian_actor(PolicySpecs(obs_dim=3, action_dim=2), num_cells=8)
    loss = APGLoss(actor)
    data = TensorDict(
        {
            "observation": torch.zeros(2, 3),
            "action": torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
            ("next", "reward"): torch.tensor([[0.0], [1.0]]),
        },
        [2],
    )
    # both samples share the state and action; the batch-mean baseline makes A = -0.5, +0.5
    torch.testing.assert_close(loss.weights(data), torch.tensor([-0.5, 0.5]))
    single = data[:1].clone()
    single["next", "reward"] = torch.tensor([[-1.0]])
    loss_one = APGLoss(actor, hand_value_network())  # V(s) = 0 here, A = -1
    torch.testing.assert_close(loss_one.weights(single), torch.tensor([-1.0]))
    optim = torch.optim.SGD(loss_one.parameters(), lr=0.01)
    dist0 = (actor(single.copy())["loc"] - single["action"]).norm()
    for _ in range(10):
        optim.zero_grad()
        loss_one(single)["loss_objective"].backward()
        optim.step()
    dist1 = (actor(single.copy())["loc"] - single["action"]).norm()
    assert torch.isfinite(dist1) and dist1 > dist0 + 0.1, (dist0, dist1)

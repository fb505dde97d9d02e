"""CRRLoss: exp and binary filters of Q(s, a) - V(s) or reward - V(s)."""

import math

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from drpo_rl.models import PolicySpecs, make_categorical_actor
from drpo_rl.objectives.crr import CRRLoss

from .test_apg import BASELINE, REWARD, hand_batch, hand_value_network


def _actor():
    return make_categorical_actor(PolicySpecs(obs_dim=3, num_items=4))


@pytest.mark.parametrize("beta", [0.5, 1.0, 5.0])
def test_exp_form(beta):
    loss = CRRLoss(_actor(), hand_value_network(), beta=beta)
    expected = torch.tensor([min(math.exp(a / beta), 20.0) for a in (REWARD - BASELINE).tolist()])
    torch.testing.assert_close(loss.weights(hand_batch()), expected)


def test_binary_form_keeps_positive_advantages():
    loss = CRRLoss(_actor(), hand_value_network(), form="binary")
    torch.testing.assert_close(loss.weights(hand_batch()), torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_advantage_from_q_critic():
    # Q(s, a) = observation[..., 1] (= 1 everywhere), V(s) = observation[..., 0]
    linear = nn.Linear(3, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0, 1.0, 0.0]]))
        linear.bias.zero_()
    q = TensorDictModule(linear, in_keys=["observation"], out_keys=["state_action_value"])
    loss = CRRLoss(_actor(), hand_value_network(), critic_network=q, form="binary")
    torch.testing.assert_close(loss.advantage(hand_batch()), 1.0 - BASELINE)
    torch.testing.assert_close(loss.weights(hand_batch()), torch.ones(4))
    # V(s) regresses onto the score, here Q(s, a)
    out = CRRLoss(_actor(), hand_value_network(), critic_network=q, reduction="none")(hand_batch())
    torch.testing.assert_close(out["loss_value"], (BASELINE - 1.0).square())


def test_validation():
    with pytest.raises(ValueError) as err:
        CRRLoss(_actor(), form="soft")
    assert str(err.value) == "form: expected one of ['exp', 'binary'], got 'soft'"
    with pytest.raises(ValueError, match="^beta: expected a finite number > 0, got -1.0$"):
        CRRLoss(_actor(), beta=-1.0)

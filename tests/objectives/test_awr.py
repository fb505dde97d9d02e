"""AWRLoss: weights min(exp((reward - V(s)) / beta), max_weight)."""

import math

import pytest
import torch

from drpo_rl.models import PolicySpecs, make_categorical_actor
from drpo_rl.objectives.awr import AWRLoss

from .test_apg import BASELINE, REWARD, hand_batch, hand_value_network


@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
def test_weights_formula_for_paper_betas(beta):
    actor = make_categorical_actor(PolicySpecs(obs_dim=3, num_items=4))
    loss = AWRLoss(actor, hand_value_network(), beta=beta, max_weight=20.0)
    adv = (REWARD - BASELINE).tolist()
    expected = torch.tensor([min(math.exp(a / beta), 20.0) for a in adv])
    torch.testing.assert_close(loss.weights(hand_batch()), expected)
    assert (loss.weights(hand_batch()) > 0).all()


def test_cap_and_validation():
    actor = make_categorical_actor(PolicySpecs(obs_dim=3, num_items=4))
    w = AWRLoss(actor, hand_value_network(), beta=0.05, max_weight=3.0).weights(hand_batch())
    assert w.max() == 3.0  # A = 0.4 -> exp(8) capped
    with pytest.raises(ValueError, match="^beta: expected a finite number > 0, got 0.0$"):
        AWRLoss(actor, beta=0.0)
    with pytest.raises(ValueError, match="^max_weight: expected a finite number > 0, got -1.0$"):
        AWRLoss(actor, max_weight=-1.0)

"""AsymReLoss: negative advantages scaled by 0.1, positive ones kept."""

import pytest
import torch

from drpo_rl.models import PolicySpecs, make_categorical_actor
from drpo_rl.objectives.asymre import AsymReLoss

from .test_apg import BASELINE, REWARD, hand_batch, hand_value_network


@pytest.mark.parametrize("scale", [0.1, 0.0, 1.0])
def test_weights_formula(scale):
    actor = make_categorical_actor(PolicySpecs(obs_dim=3, num_items=4))
    loss = AsymReLoss(actor, hand_value_network(), negative_scale=scale)
    adv = REWARD - BASELINE  # [0.4, -0.3, 0.4, -0.3]
    expected = torch.where(adv >= 0, adv, scale * adv)
    torch.testing.assert_close(loss.weights(hand_batch()), expected)


def test_default_is_paper_value_and_validation():
    actor = make_categorical_actor(PolicySpecs(obs_dim=3, num_items=4))
    assert AsymReLoss(actor).negative_scale == 0.1
    with pytest.raises(ValueError) as err:
        AsymReLoss(actor, negative_scale=1.5)
    assert str(err.value) == "negative_scale: expected a finite number in [0, 1], got 1.5"

"""drpo_rl.objectives."""

from drpo_rl.objectives.advantage import AdvantageWeightedLoss, exp_advantage_weights
from drpo_rl.objectives.apg import APGLoss
from drpo_rl.objectives.asymre import AsymReLoss
from drpo_rl.objectives.awr import AWRLoss
from drpo_rl.objectives.crr import CRRLoss
from drpo_rl.objectives.dro import cvar_threshold, optimistic_dro_weights, top_fraction_mask
from drpo_rl.objectives.drpo import DRPOLoss
from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, effective_sample_size

__all__ = [
    "APGLoss",
    "AWRLoss",
    "AdvantageWeightedLoss",
    "AsymReLoss",
    "CRRLoss",
    "DRPOLoss",
    "WeightedLogLikelihoodLoss",
    "cvar_threshold",
    "effective_sample_size",
    "exp_advantage_weights",
    "optimistic_dro_weights",
    "top_fraction_mask",
]

"""drpo_rl.objectives."""

from drpo_rl.objectives.dro import cvar_threshold, optimistic_dro_weights, top_fraction_mask
from drpo_rl.objectives.drpo import DRPOLoss
from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, effective_sample_size

__all__ = [
    "DRPOLoss",
    "WeightedLogLikelihoodLoss",
    "cvar_threshold",
    "effective_sample_size",
    "optimistic_dro_weights",
    "top_fraction_mask",
]

"""drpo_rl.objectives."""

from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, effective_sample_size

__all__ = ["WeightedLogLikelihoodLoss", "effective_sample_size"]

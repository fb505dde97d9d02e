"""drpo_rl.models: actors (TorchRL ``ProbabilisticActor``) and critics (``ValueOperator``).

Actors are MLPs of the observation, or (:mod:`drpo_rl.models.sequence`) a causal
transformer over the session history the observation carries, in front of the same heads.

Every factory takes an env (its specs are read) or a :class:`PolicySpecs`.
"""

from drpo_rl.models.actors import (
    categorical_bc_module,
    make_actor,
    make_categorical_actor,
    make_gaussian_actor,
    make_item_scores,
)
from drpo_rl.models.critics import make_qvalue_critic, make_value_critic
from drpo_rl.models.networks import BoundedNormalScale, TwoTowerScores, make_mlp
from drpo_rl.models.sequence import SessionEncoder, SessionLayout, make_sequence_actor
from drpo_rl.models.specs import PolicySpecs

__all__ = [
    "BoundedNormalScale",
    "PolicySpecs",
    "SessionEncoder",
    "SessionLayout",
    "TwoTowerScores",
    "categorical_bc_module",
    "make_actor",
    "make_categorical_actor",
    "make_gaussian_actor",
    "make_item_scores",
    "make_mlp",
    "make_qvalue_critic",
    "make_sequence_actor",
    "make_value_critic",
]

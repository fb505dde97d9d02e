"""drpo_rl.models: actors (TorchRL ``ProbabilisticActor``) and critics (``ValueOperator``).

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
from drpo_rl.models.specs import PolicySpecs

__all__ = [
    "BoundedNormalScale",
    "PolicySpecs",
    "TwoTowerScores",
    "categorical_bc_module",
    "make_actor",
    "make_categorical_actor",
    "make_gaussian_actor",
    "make_item_scores",
    "make_mlp",
    "make_qvalue_critic",
    "make_value_critic",
]

"""Simulated users for off-policy recommendation.

Batched TorchRL environments (CPU or CUDA) and their Gymnasium faces.
"""

from envs.catalogue import Catalogue
from envs.config import RecSimConfig, UserSessionConfig
from envs.factory import list_envs, make_env
from envs.recsim_bandit import RecSimBandit, RecSimBanditDiscrete
from envs.simulator import SimulatedUsersEnv
from envs.user_session import UserSession

__all__ = [
    "Catalogue",
    "RecSimBandit",
    "RecSimBanditDiscrete",
    "RecSimConfig",
    "SimulatedUsersEnv",
    "UserSession",
    "UserSessionConfig",
    "list_envs",
    "make_env",
]

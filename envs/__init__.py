"""Simulated users for off-policy recommendation.

Batched TorchRL environments (CPU or CUDA) and their Gymnasium faces.
"""

from envs.catalogue import Catalogue
from envs.config import RecSimConfig, UserSessionConfig
from envs.factory import list_envs, make_env
from envs.gym_env import SimulatedUsersGymEnv
from envs.gym_vector import SimulatedUsersVectorEnv
from envs.recsim_bandit import RecSimBandit, RecSimBanditDiscrete
from envs.registration import register_envs
from envs.simulator import SimulatedUsersEnv
from envs.user_session import UserSession

register_envs()

__all__ = [
    "Catalogue",
    "RecSimBandit",
    "RecSimBanditDiscrete",
    "RecSimConfig",
    "SimulatedUsersEnv",
    "SimulatedUsersGymEnv",
    "SimulatedUsersVectorEnv",
    "UserSession",
    "UserSessionConfig",
    "list_envs",
    "make_env",
    "register_envs",
]

"""Simulated users for off-policy recommendation.

Batched TorchRL environments (CPU or CUDA) and their Gymnasium faces, all running one
simulator core (`envs.dynamics`, pure batched torch functions):

- `make_env(name, *, num_envs=1, device="cpu", seed=None, **config_fields)` and
  `list_envs()`: "RecSimBandit" (embedding action), "RecSimBanditDiscrete" (item id),
  "UserSession" (multi-step sessions), "FittedRatings" (sessions on users and items fitted
  to a ratings file) and "MovieLens100K" (the same on MovieLens-100K, which the
  `recbole` package ships; making it without recbole says what to install).
- Gymnasium ids `drpo_rl/<name>-v0`, registered on import (entry point: one user;
  vector entry point: the batched core), also reachable as "envs:drpo_rl/<name>-v0".

Example:
    >>> import envs
    >>> env = envs.make_env("UserSession", num_envs=4, seed=0)
    >>> env.rollout(3).batch_size
    torch.Size([4, 3])
"""

from envs.catalogue import Catalogue
from envs.config import RecSimConfig, UserSessionConfig
from envs.factory import EnvSpec, list_envs, make_env
from envs.gym_env import SimulatedUsersGymEnv
from envs.gym_vector import SimulatedUsersVectorEnv
from envs.population import UserPopulation
from envs.recsim_bandit import RecSimBandit, RecSimBanditDiscrete
from envs.registration import register_envs
from envs.simulator import SimulatedUsersEnv
from envs.user_session import UserSession

register_envs()

__all__ = [
    "Catalogue",
    "EnvSpec",
    "RecSimBandit",
    "RecSimBanditDiscrete",
    "RecSimConfig",
    "SimulatedUsersEnv",
    "SimulatedUsersGymEnv",
    "SimulatedUsersVectorEnv",
    "UserPopulation",
    "UserSession",
    "UserSessionConfig",
    "list_envs",
    "make_env",
    "register_envs",
]

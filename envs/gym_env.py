"""Gymnasium face of the suite for one user: the batched core with a batch of one."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.factory import make_env
from envs.simulator import SimulatedUsersEnv


def single_spaces(core: SimulatedUsersEnv) -> tuple[spaces.Space, spaces.Space]:
    """(observation space, action space) of one user of `core`."""
    obs_dim = core.observation_spec["observation"].shape[-1]
    observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
    if core.config.action_type == "item":
        action_space: spaces.Space = spaces.Discrete(core.config.num_items)
    else:
        # Decoding is by cosine, so the box reaches every item; Gymnasium's checker warns on
        # infinite action bounds. Actions outside it are still accepted, as in the core.
        action_space = spaces.Box(-1.0, 1.0, shape=(core.config.embedding_dim,), dtype=np.float32)
    return observation_space, action_space


class SimulatedUsersGymEnv(gym.Env):
    """One simulated user as a `gymnasium.Env`, adapting the batched TorchRL core.

    Registered as `drpo_rl/RecSimBandit-v0`, `drpo_rl/RecSimBanditDiscrete-v0` and
    `drpo_rl/UserSession-v0`; the dynamics, spaces and rewards are those of the batched
    env of the same name (see its docstring), with numpy in and out. `reset(seed=s)` seeds
    the core's generator, so the same seed and actions give exactly the observations and
    rewards of `make_env(name, num_envs=1, seed=s)`.

    `info` holds the privileged entries: "item_rewards" (float32 [N], after reset and
    step), and after a step "item" (int) and "latent_reward" (float).

    Example:
        >>> import gymnasium as gym
        >>> import envs
        >>> env = gym.make("drpo_rl/RecSimBanditDiscrete-v0", num_items=10)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, info["item_rewards"].shape
        ((16,), (10,))
        >>> obs, reward, terminated, truncated, info = env.step(3)
        >>> info["item"], terminated, truncated, 0.0 <= reward <= 1.0
        (3, True, False, True)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, name: str = "RecSimBandit", render_mode: None = None, **overrides):
        if render_mode is not None:
            raise ValueError(f"render_mode: expected None (no rendering), got {render_mode!r}")
        self.core = make_env(name, num_envs=1, device="cpu", **overrides)
        self.observation_space, self.action_space = single_spaces(self.core)
        self._td = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.set_seed(seed)
        self._td = self.core.reset()
        return self._td["observation"][0].numpy(), {
            "item_rewards": self._td["item_rewards"][0].numpy().copy()
        }

    def step(self, action):
        if self._td is None:
            raise RuntimeError("call reset() before step()")
        self._td["action"] = self._to_tensor(action)
        out = self.core.step(self._td)["next"]
        self._td = out.exclude("reward", "done", "terminated", "truncated")
        info = {
            "item": int(out["item"][0]),
            "latent_reward": float(out["latent_reward"][0, 0]),
            "item_rewards": out["item_rewards"][0].numpy().copy(),
        }
        return (
            out["observation"][0].numpy(),
            float(out["reward"][0, 0]),
            bool(out["terminated"][0, 0]),
            bool(out["truncated"][0, 0]),
            info,
        )

    def _to_tensor(self, action) -> torch.Tensor:
        """One user's action as the core's batch of one, checking it against the space."""
        if isinstance(self.action_space, spaces.Discrete):
            array = np.asarray(action)
            if array.shape != () or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(
                    f"action: expected an integer item id in [0, {self.action_space.n - 1}], "
                    f"got {action!r}"
                )
            return torch.as_tensor(array, dtype=torch.int64).reshape(1)
        array = np.asarray(action)
        if array.shape != self.action_space.shape or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"action: expected a float array of shape {self.action_space.shape}, got "
                f"{array.dtype} array of shape {array.shape}"
            )
        return torch.as_tensor(array, dtype=torch.float32).reshape(1, -1)

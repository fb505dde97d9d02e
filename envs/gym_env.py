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
    return observation_space, core.action_kind.space(core)


def privileged_info(core: SimulatedUsersEnv, row: slice | int) -> dict[str, Any]:
    """The privileged entries `core` was asked for (`privileged=`), for Gymnasium's info."""
    info: dict[str, Any] = {}
    if "oracle" in core.privileged:
        best = core.oracle()
        # Copies: the oracle is cached while the users stay, and Gymnasium's users keep infos.
        info["oracle_item"] = best["item"][row].cpu().numpy().copy()
        info["oracle_reward"] = best["reward"][row].cpu().numpy().copy()
    if "item_rewards" in core.privileged:
        info["item_rewards"] = core.reward_table()[row].cpu().numpy()
    return info


class SimulatedUsersGymEnv(gym.Env):
    """One simulated user as a `gymnasium.Env`, adapting the batched TorchRL core.

    Registered as `drpo_rl/<name>-v0` for every env of `envs.list_envs()`; the dynamics,
    spaces and rewards are those of the batched env of the same name (see its docstring),
    with numpy in and out. `reset(seed=s)` seeds the core's generator, so the same seed and
    actions give exactly the observations and rewards of `make_env(name, num_envs=1,
    seed=s)`. The core runs as a batch of one through its own rules, without TorchRL's
    per-step machinery (which costs more than a one-user step).

    `info` holds, after a step, "item" (int, the item shown) and "latent_reward" (float,
    its noiseless reward); with `privileged=("oracle",)` also "oracle_item" and
    "oracle_reward", and with `privileged=("item_rewards",)` the full table [N] (after
    reset and step).

    Example:
        >>> import gymnasium as gym
        >>> import envs
        >>> env = gym.make("drpo_rl/RecSimBanditDiscrete-v0", num_items=10,
        ...                privileged=("oracle",))
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, int(info["oracle_item"]) in range(10)
        ((16,), True)
        >>> obs, reward, terminated, truncated, info = env.step(3)
        >>> info["item"], terminated, truncated, 0.0 <= reward <= 1.0
        (3, True, False, True)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        name: str = "RecSimBandit",
        render_mode: None = None,
        privileged: tuple[str, ...] = (),
        **overrides,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode: expected None (no rendering), got {render_mode!r}")
        self.core = make_env(name, num_envs=1, device="cpu", privileged=privileged, **overrides)
        self.observation_space, self.action_space = single_spaces(self.core)
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.set_seed(seed)
        self.core._arrive()
        self._started = True
        return self.core._observation()[0].numpy(), privileged_info(self.core, 0)

    def step(self, action):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        item = self.core.action_kind.decode_numpy(action, (), self.core)
        reward, latent, leaves = self.core._show(item)
        # One conversion to Python numbers for the four scalars.
        shown, reward, latent, leaves = torch.stack(
            [item.double(), reward.double(), latent.double(), leaves.double()]
        ).tolist()
        info = {"item": int(shown[0]), "latent_reward": latent[0]}
        info |= privileged_info(self.core, 0)
        # The session length limit is part of the user's (observed) dynamics, so reaching
        # it terminates the episode; nothing truncates inside the env.
        obs = self.core._observation()[0].numpy()
        return obs, reward[0], bool(leaves[0]), False, info

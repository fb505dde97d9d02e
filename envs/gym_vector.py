"""Gymnasium vector face of the suite: the batched core behind `gymnasium.make_vec`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.factory import make_env
from envs.gym_env import privileged_info, single_spaces


class SimulatedUsersVectorEnv(VectorEnv):
    """`num_envs` simulated users as a `gymnasium.vector.VectorEnv` on the batched core.

    The `vector_entry_point` of the suite's Gymnasium ids: one batched step of the core per
    call (on `device`, CPU or CUDA), numpy in and out, through the core's own rules (the
    random stream is that of TorchRL's `step_and_maybe_reset` on the same core). Autoreset
    mode SAME_STEP (what TorchRL's `GymEnv` wraps): users whose episode ended are reset
    within the step; `info["final_obs"]` holds the last observation of every user
    (meaningful where `info["_final_obs"]` is True). `reset(options={"reset_mask": mask})`
    resets only the masked users.

    `info` also holds, after a step, "item" and "latent_reward" of the shown item (before
    any reset), and the privileged entries asked for with `privileged=` (see
    `SimulatedUsersGymEnv`), for the users after any reset.

    Example:
        >>> import gymnasium as gym
        >>> import numpy as np
        >>> import envs
        >>> vec = gym.make_vec("drpo_rl/RecSimBanditDiscrete-v0", num_envs=3,
        ...                    vectorization_mode="vector_entry_point", num_items=10)
        >>> obs, info = vec.reset(seed=0)
        >>> obs.shape, vec.single_action_space
        ((3, 16), Discrete(10))
        >>> obs, reward, terminated, truncated, info = vec.step(np.array([1, 2, 3]))
        >>> reward.shape, terminated.tolist(), info["item"].tolist()
        ((3,), [True, True, True], [1, 2, 3])
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        name: str = "RecSimBandit",
        device: torch.device | str = "cpu",
        render_mode: None = None,
        privileged: tuple[str, ...] = (),
        **overrides,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode: expected None (no rendering), got {render_mode!r}")
        self.core = make_env(
            name, num_envs=num_envs, device=device, privileged=privileged, **overrides
        )
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = single_spaces(self.core)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        super().reset(seed=seed)
        if seed is not None:
            self.core.set_seed(seed)
        mask = None if options is None else options.get("reset_mask")
        if mask is not None and self._started:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask']: expected a bool array of shape "
                    f"({self.num_envs},), got {mask.dtype} array of shape {mask.shape}"
                )
            self.core._arrive(torch.as_tensor(mask, device=self.core.device))
        else:
            self.core._arrive()
        self._started = True
        return _numpy(self.core._observation()), privileged_info(self.core, slice(None))

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        kind = self.core.action_kind
        item = kind.decode_numpy(actions, (self.num_envs,), self.core)
        reward, latent, leaves = self.core._show(item)
        final_obs = _numpy(self.core._observation())
        info = {
            "item": _numpy(item),
            "latent_reward": _numpy(latent),
            "final_obs": final_obs,
            "_final_obs": _numpy(leaves),
        }
        # The numpy outputs synchronise anyway; resetting only when someone is done keeps
        # the random stream that of TorchRL's `step_and_maybe_reset` on the same core.
        obs = final_obs
        if leaves.any():
            self.core._arrive(leaves)
            obs = _numpy(self.core._observation())
        info |= privileged_info(self.core, slice(None))
        terminated = _numpy(leaves)
        return obs, _numpy(reward), terminated, np.zeros_like(terminated), info

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()

"""Gymnasium vector face of the suite: the batched core behind `gymnasium.make_vec`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from tensordict import TensorDict

from envs.factory import make_env
from envs.gym_env import single_spaces


class SimulatedUsersVectorEnv(VectorEnv):
    """`num_envs` simulated users as a `gymnasium.vector.VectorEnv` on the batched core.

    The `vector_entry_point` of the suite's Gymnasium ids: one batched step of the TorchRL
    core per call (on `device`, CPU or CUDA), numpy in and out. Autoreset mode SAME_STEP
    (what TorchRL's `GymEnv` wraps): users whose episode ended are reset within the step;
    `info["final_obs"]` holds the last observation of every user (meaningful where
    `info["_final_obs"]` is True). `reset(options={"reset_mask": mask})` resets only the
    masked users.

    `info` also holds the privileged "item_rewards" [num_envs, N] and, after a step,
    "item" and "latent_reward" of the shown item (before any reset).

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
        **overrides,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode: expected None (no rendering), got {render_mode!r}")
        self.core = make_env(name, num_envs=num_envs, device=device, **overrides)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = single_spaces(self.core)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._td = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        super().reset(seed=seed)
        if seed is not None:
            self.core.set_seed(seed)
        mask = None if options is None else options.get("reset_mask")
        if mask is None or self._td is None:
            self._td = self.core.reset()
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask']: expected a bool array of shape "
                    f"({self.num_envs},), got {mask.dtype} array of shape {mask.shape}"
                )
            self._td = self._partial_reset(torch.as_tensor(mask, device=self.core.device), self._td)
        return _numpy(self._td["observation"]), {"item_rewards": _numpy(self._td["item_rewards"])}

    def step(self, actions):
        if self._td is None:
            raise RuntimeError("call reset() before step()")
        self._td["action"] = self._to_tensor(actions)
        out = self.core.step(self._td)["next"]
        done = out["done"].squeeze(-1)
        info = {
            "item": _numpy(out["item"]),
            "latent_reward": _numpy(out["latent_reward"].squeeze(-1)),
            "final_obs": _numpy(out["observation"]),
            "_final_obs": _numpy(done),
        }
        self._td = out
        # The numpy outputs synchronise anyway; resetting only when someone is done keeps
        # the random stream that of TorchRL's `step_and_maybe_reset` on the same core.
        if done.any():
            self._td = self._partial_reset(done, self._td)
        info["item_rewards"] = _numpy(self._td["item_rewards"])
        return (
            _numpy(self._td["observation"]),
            _numpy(out["reward"].squeeze(-1)),
            _numpy(out["terminated"].squeeze(-1)),
            _numpy(out["truncated"].squeeze(-1)),
            info,
        )

    def _partial_reset(self, mask: torch.Tensor, current: TensorDict) -> TensorDict:
        """Reset the masked users; the others keep their observation.

        TorchRL's partial reset writes the new users' rows into the input in place, so it
        gets copies: the arrays already handed out (final_obs, info) must not change.
        """
        reset_in = current.select("observation", "item_rewards").clone()
        return self.core.reset(reset_in.set("_reset", mask.unsqueeze(-1)))

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

    def _to_tensor(self, actions) -> torch.Tensor:
        array = np.asarray(actions)
        expected = self.action_space.shape
        if self.core.config.action_type == "item":
            if array.shape != expected or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(
                    f"actions: expected an integer array of shape {expected}, got "
                    f"{array.dtype} array of shape {array.shape}"
                )
            dtype = torch.int64
        else:
            if array.shape != expected or not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"actions: expected a float array of shape {expected}, got "
                    f"{array.dtype} array of shape {array.shape}"
                )
            dtype = torch.float32
        return torch.as_tensor(array, dtype=dtype, device=self.core.device)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()

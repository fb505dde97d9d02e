"""Gymnasium vector face of the suite: the batched core behind `gymnasium.make_vec`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.factory import make_env
from envs.gym_env import check_render_mode, privileged_info, single_spaces


class SimulatedUsersVectorEnv(VectorEnv):
    """`num_envs` simulated users as a `gymnasium.vector.VectorEnv` on the batched core.

    The `vector_entry_point` of the suite's Gymnasium ids: one batched step of the core per
    call (on `device`, CPU or CUDA), numpy in and out, through the core's own rules.
    `reset(options={"reset_mask": mask})` resets only the masked users.

    Autoreset (`autoreset_mode=`, Gymnasium's names and default):

    | Mode                | Users whose episode ended ...                                  |
    |---------------------|----------------------------------------------------------------|
    | NEXT_STEP (default) | start anew at the next `step`, which ignores their action and  |
    |                     | returns their first observation, reward 0, not terminated      |
    | SAME_STEP           | start anew within the step; `info["final_obs"]` [B, obs_dim]   |
    |                     | and `info["final_info"]` hold the ended episodes' last step    |
    |                     | (where `info["_final_obs"]`); what TorchRL's `GymWrapper` needs |
    | DISABLED            | wait for `reset(options={"reset_mask": ...})`; stepping them   |
    |                     | raises `gymnasium.error.ResetNeeded`                           |

    `info` follows Gymnasium's vector convention, with the keys and masks of
    `make_vec(id, vectorization_mode="sync")` in the same mode: each entry of the single
    env's info (`SimulatedUsersGymEnv`: "item", and "latent_reward", "oracle_item", ...
    when asked with `privileged=`) as an array over users with its mask "_<key>"; users
    who started anew within the step show a reset's entries ("item" -1).

    Rows and seeds: `reset(seed=s)` seeds one generator for all users, so row i is row i
    of `make_env(name, num_envs=B, seed=s)`; in `make_vec(..., "sync")` row i is instead
    the single env reset with seed `s + i` (Gymnasium's rule).

    Example:
        >>> import gymnasium as gym
        >>> import numpy as np
        >>> import envs
        >>> vec = gym.make_vec("drpo_rl/RecSimBanditDiscrete-v0", num_envs=3,
        ...                    vectorization_mode="vector_entry_point", num_items=10)
        >>> obs, info = vec.reset(seed=0)
        >>> obs.shape, vec.single_action_space, vec.autoreset_mode.name
        ((3, 16), Discrete(10), 'NEXT_STEP')
        >>> obs, reward, terminated, truncated, info = vec.step(np.array([1, 2, 3]))
        >>> reward.shape, terminated.tolist(), info["item"].tolist()
        ((3,), [True, True, True], [1, 2, 3])
        >>> obs, reward, terminated, truncated, info = vec.step(np.array([1, 2, 3]))
        >>> reward.tolist(), terminated.tolist(), info["item"].tolist()  # new users
        ([0.0, 0.0, 0.0], [False, False, False], [-1, -1, -1])
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        name: str = "RecSimBandit",
        device: torch.device | str = "cpu",
        render_mode: None = None,
        privileged: tuple[str, ...] = (),
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **overrides,
    ):
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.metadata = {**self.metadata, "autoreset_mode": _checked_mode(autoreset_mode)}
        self.core = make_env(
            name, num_envs=num_envs, device=device, privileged=privileged, **overrides
        )
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = single_spaces(self.core)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._latent_in_info = "latent_reward" in self.core.privileged
        self._started = False
        # Users whose episode ended at the last step and who have not started anew yet.
        self._ended = np.zeros(num_envs, dtype=np.bool_)
        self._any_ended = False

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

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
            self._ended &= ~mask
        else:
            self.core._arrive()
            self._ended[:] = False
        self._any_ended = bool(self._ended.any())
        self._started = True
        info = self._masked(self._reset_entries() | privileged_info(self.core, slice(None)))
        return _numpy(self.core._observation()), info

    def step(self, actions):
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        mode = self.autoreset_mode
        if mode is AutoresetMode.DISABLED and self._any_ended:
            raise gym.error.ResetNeeded(
                f"autoreset_mode DISABLED: users {np.flatnonzero(self._ended).tolist()[:10]} "
                "ended; reset them with reset(options={'reset_mask': mask}) before step()"
            )
        item = self.core.action_kind.decode_numpy(actions, (self.num_envs,), self.core)
        reward, latent, left, capped = self.core._show(item)
        step_info = {"item": _numpy(item)}
        if self._latent_in_info:
            step_info["latent_reward"] = _numpy(latent)
        reward, terminated, truncated = _numpy(reward), _numpy(left), _numpy(capped)
        if mode is AutoresetMode.NEXT_STEP:
            return self._step_next(reward, terminated, truncated, step_info)
        if mode is AutoresetMode.SAME_STEP:
            return self._step_same(reward, terminated, truncated, left | capped, step_info)
        self._ended = terminated | truncated
        self._any_ended = bool(self._ended.any())
        info = self._masked(step_info | privileged_info(self.core, slice(None)))
        return _numpy(self.core._observation()), reward, terminated, truncated, info

    def _step_next(self, reward, terminated, truncated, step_info):
        # The users who ended at the last step were shown an item too (the batch moves as
        # one); they now start anew instead, with the reset's outputs.
        started = self._ended
        if self._any_ended:
            self.core._arrive(torch.as_tensor(started, device=self.core.device))
            reward = np.where(started, 0.0, reward).astype(reward.dtype)
            terminated, truncated = terminated & ~started, truncated & ~started
        self._ended = terminated | truncated
        self._any_ended = bool(self._ended.any())
        info = self._masked(_merged(step_info, self._reset_entries(), started))
        info |= self._masked(privileged_info(self.core, slice(None)))
        return _numpy(self.core._observation()), reward, terminated, truncated, info

    def _step_same(self, reward, terminated, truncated, leaves, step_info):
        obs = _numpy(self.core._observation())
        info: dict[str, Any] = {}
        ended = terminated | truncated
        if ended.any():
            # Resetting only when someone is done keeps the random stream that of
            # TorchRL's `step_and_maybe_reset` on the same core.
            final_info = step_info | privileged_info(self.core, slice(None))
            info = {
                "final_obs": obs,
                "_final_obs": ended,
                "final_info": self._masked(final_info, ended),
                "_final_info": ended,
            }
            self.core._arrive(leaves)
            obs = _numpy(self.core._observation())
        info |= self._masked(_merged(step_info, self._reset_entries(), ended))
        info |= self._masked(privileged_info(self.core, slice(None)))
        return obs, reward, terminated, truncated, info

    def _reset_entries(self) -> dict[str, np.ndarray]:
        """The step's info entries of users who just started (no item shown yet)."""
        entries = {"item": np.full(self.num_envs, -1, dtype=np.int64)}
        if self._latent_in_info:
            entries["latent_reward"] = np.zeros(self.num_envs, dtype=np.float32)
        return entries

    def _masked(self, entries: dict[str, Any], mask: np.ndarray | None = None) -> dict[str, Any]:
        """`entries` with Gymnasium's "_<key>" masks (all True when `mask` is None); none
        where the mask is all False (Gymnasium's vector envs then have no such key)."""
        if mask is None:
            mask = np.ones(self.num_envs, dtype=np.bool_)
        elif not mask.any():
            return {}
        out: dict[str, Any] = {}
        for key, value in entries.items():
            out[key], out[f"_{key}"] = value, mask
        return out


def _merged(step: dict, fresh: dict, mask: np.ndarray) -> dict:
    """The step's entries, with those of a reset where `mask` (users who started anew)."""
    if not mask.any():
        return step
    return {key: np.where(mask, fresh[key], value) for key, value in step.items()}


def _checked_mode(mode: AutoresetMode | str) -> AutoresetMode:
    if isinstance(mode, str) and mode.upper() in AutoresetMode.__members__:
        return AutoresetMode[mode.upper()]
    if isinstance(mode, AutoresetMode):
        return mode
    raise ValueError(
        f"autoreset_mode: expected a gymnasium.vector.AutoresetMode "
        f"({', '.join(AutoresetMode.__members__)}), got {mode!r}"
    )


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()

"""Item-id actions: the action is the id of the item to show."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torchrl.data import Categorical, TensorSpec

from envs.actions.base import ActionKind, describe


class ItemAction(ActionKind):
    """An int64 item id in [0, num_items) per user (spec `Categorical(num_items)`).

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=10)
        >>> env.action_kind.decode(torch.tensor([3, 12]), env)
        Traceback (most recent call last):
        ...
        ValueError: action: expected item ids in [0, 9], got 12
    """

    name = "item"

    def spec(self, env: Any) -> TensorSpec:
        return Categorical(
            env.config.num_items, shape=(env.num_envs,), dtype=torch.int64, device=env.device
        )

    def space(self, env: Any) -> spaces.Space:
        return spaces.Discrete(env.config.num_items)

    def decode(self, action: Any, env: Any) -> torch.Tensor:
        b, n = env.num_envs, env.config.num_items
        if (
            not isinstance(action, torch.Tensor)
            or action.is_floating_point()
            or action.is_complex()
            or action.dtype == torch.bool
        ):
            raise ValueError(
                f"action: expected integer item ids (int64) of shape ({b},), got {describe(action)}"
            )
        if action.shape != (b,):
            raise ValueError(f"action: expected item ids of shape ({b},), got {describe(action)}")
        action = action.to(device=env.device, dtype=torch.int64)
        outside = (action < 0) | (action >= n)
        if outside.any():
            raise ValueError(out_of_range(action[outside].tolist(), n))
        return action

    def encode(self, items: torch.Tensor, env: Any) -> torch.Tensor:
        return items

    def from_numpy(self, array: Any, shape: tuple[int, ...], env: Any) -> torch.Tensor:
        array = np.asarray(array)
        if array.shape != shape or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"action: expected an integer item id in [0, {env.config.num_items - 1}] per "
                f"user (an integer array of shape {shape}), got {describe(array)}"
            )
        return torch.as_tensor(array, dtype=torch.int64, device=env.device).reshape(-1)

    def decode_numpy(self, array: Any, shape: tuple[int, ...], env: Any) -> torch.Tensor:
        n = env.config.num_items
        if shape == () and isinstance(array, (int, np.integer)) and not isinstance(array, bool):
            # One user's id (Gymnasium's Discrete samples, SB3's actions): checked in Python,
            # a fraction of the cost of a numpy round trip at this size.
            if not 0 <= array < n:
                raise ValueError(out_of_range([int(array)], n))
            return torch.tensor([int(array)], device=env.device)
        # The range check in numpy, before the tensor exists: cheaper for one user.
        items = self.from_numpy(array, shape, env)
        array = np.asarray(array)
        if np.min(array) < 0 or np.max(array) >= n:
            raise ValueError(out_of_range(array[(array < 0) | (array >= n)].tolist(), n))
        return items


def out_of_range(values: list[int], num_items: int) -> str:
    """The message for item ids outside [0, num_items): the distinct ones, a few at most."""
    distinct = sorted(set(values))
    shown = ", ".join(str(v) for v in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
    return f"action: expected item ids in [0, {num_items - 1}], got {shown}"

"""What every action kind provides: the one place an env, its Gymnasium faces and the
behaviour policies learn how an action shows items to users."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torchrl.data import TensorSpec


class ActionKind:
    """How actions of one kind show catalogue items to users.

    A kind turns a batch of actions into the item each user is shown (`decode`, with the
    input checks), says what the action looks like (`spec` for TorchRL, `space` for
    Gymnasium, `from_numpy` for Gymnasium's arrays), and turns chosen items back into
    actions for the behaviour policies and the oracle (`encode`, `behaviour_action`). An env
    holds one kind, named by its config's `action_type`; a new kind is one file and one
    `envs.actions.register` call.

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBandit", num_envs=2, num_items=50)
        >>> kind = env.action_kind
        >>> kind.name, kind.spec(env).shape, kind.space(env).shape
        ('embedding', torch.Size([2, 16]), (16,))
        >>> items = torch.tensor([7, 41])
        >>> kind.decode(kind.encode(items, env), env).tolist()  # an item's action shows it
        [7, 41]
    """

    #: The config's `action_type` value that selects this kind.
    name: str = ""

    def spec(self, env: Any) -> TensorSpec:
        """The TorchRL action spec of a batch of `env.num_envs` actions."""
        raise NotImplementedError

    def space(self, env: Any) -> spaces.Space:
        """The Gymnasium action space of one user."""
        raise NotImplementedError

    def decode(self, action: Any, env: Any) -> torch.Tensor:
        """The items [B] (int64, on `env.device`) the actions show; ValueError for a bad
        action, saying what was expected."""
        raise NotImplementedError

    def encode(self, items: torch.Tensor, env: Any) -> torch.Tensor:
        """Actions that show `items` [B] (each decodes back to its item)."""
        raise NotImplementedError

    def from_numpy(self, array: Any, shape: tuple[int, ...], env: Any) -> torch.Tensor:
        """Gymnasium actions of batch shape `shape` as the core's tensor, checked."""
        raise NotImplementedError

    def decode_numpy(self, array: Any, shape: tuple[int, ...], env: Any) -> torch.Tensor:
        """The items [B] that Gymnasium actions of batch shape `shape` show (the Gymnasium
        faces' path: `decode` of `from_numpy`, which a kind may shortcut)."""
        return self.decode(self.from_numpy(array, shape, env), env)

    def behaviour_action(
        self,
        items: torch.Tensor,
        item_log_prob: torch.Tensor,
        env: Any,
        *,
        noise: float,
        generator: torch.Generator,
        log_probs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logged action, its log-propensity) for behaviour that chose `items` [B].

        `item_log_prob` [B] is the behaviour's log-probability of each chosen item;
        `log_probs(items: slice) -> [B, chunk]` gives its log-probabilities of any items
        (kinds whose action is not one-to-one with items need them). `noise` is the
        behaviour's action noise; kinds without one refuse a non-zero value.
        """
        if noise != 0.0:
            raise ValueError(
                f"action_noise: expected 0 for {self.name!r} actions (only embedding actions "
                f"take noise), got {noise!r}"
            )
        return self.encode(items, env), item_log_prob


def describe(value: object) -> str:
    """A short description of a bad action, for the error messages."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"{value!r}"

"""Embedding actions: a vector in R^d, decoded to the item of highest cosine similarity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torchrl.data import Bounded, TensorSpec

from envs import chunks
from envs.actions.base import ActionKind, describe


class EmbeddingAction(ActionKind):
    """A float32 embedding [d] per user, shown as the item of highest cosine similarity,
    found exactly over the catalogue in chunks of `env.chunk_size` items.

    The action's own norm scales its whole row of cosines, so it cannot change the item:
    the spec (TorchRL) and the space (Gymnasium) are both the box [-1, 1]^d, which reaches
    every direction and is what Gymnasium's and Stable-Baselines3's checkers advise;
    actions outside it are accepted (an item's own embedding, a Gaussian's sample). The
    zero action has no direction and is refused.

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBandit", num_envs=2, num_items=10, chunk_size=3)
        >>> items = torch.tensor([4, 9])
        >>> env.action_kind.decode(2.0 * env.action_kind.encode(items, env), env).tolist()
        [4, 9]
    """

    name = "embedding"

    def spec(self, env: Any) -> TensorSpec:
        shape = (env.num_envs, env.config.embedding_dim)
        return Bounded(-1.0, 1.0, shape=shape, dtype=torch.float32, device=env.device)

    def space(self, env: Any) -> spaces.Space:
        return spaces.Box(-1.0, 1.0, shape=(env.config.embedding_dim,), dtype=np.float32)

    def decode(self, action: Any, env: Any) -> torch.Tensor:
        b, d = env.num_envs, env.config.embedding_dim
        if not isinstance(action, torch.Tensor) or not action.is_floating_point():
            raise ValueError(
                f"action: expected a floating-point embedding tensor of shape ({b}, {d}), "
                f"got {describe(action)}"
            )
        if action.shape != (b, d):
            raise ValueError(
                f"action: expected an embedding of shape ({b}, {d}), got {describe(action)}"
            )
        action = action.to(device=env.device, dtype=torch.float32)
        # One host synchronisation for both checks.
        if not (torch.isfinite(action).all() & (action != 0).any(-1).all()):
            if not torch.isfinite(action).all():
                raise ValueError("action: expected finite embedding values, got NaN or inf")
            zero = torch.nonzero(~(action != 0).any(-1)).flatten().tolist()
            raise ValueError(
                f"action: expected a non-zero embedding (its direction picks the item), got "
                f"zero vectors for users {zero[:10]}"
            )
        return nearest_items(action, env.catalogue.unit_embeddings, env.chunk_size)

    def encode(self, items: torch.Tensor, env: Any) -> torch.Tensor:
        return env.catalogue.embeddings[items]

    def from_numpy(self, array: Any, shape: tuple[int, ...], env: Any) -> torch.Tensor:
        array = np.asarray(array)
        expected = shape + (env.config.embedding_dim,)
        if array.shape != expected or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"action: expected a float array of shape {expected}, got {describe(array)}"
            )
        return torch.as_tensor(array, dtype=torch.float32, device=env.device).reshape(
            -1, env.config.embedding_dim
        )

    def behaviour_action(self, items, item_log_prob, env, *, noise, generator, log_probs):
        action = self.encode(items, env)
        if noise == 0.0:
            # The action is the item's own embedding, which decodes back to it: the
            # propensity of the action is the probability of the item.
            return action, item_log_prob
        action = action + noise * torch.randn(
            action.shape, generator=generator, device=action.device, dtype=action.dtype
        )
        return action, gaussian_mixture_log_density(action, env, log_probs, noise)


def nearest_items(action: torch.Tensor, unit_embeddings: torch.Tensor, chunk_size: int):
    """The item of highest cosine similarity to each action [B, d]: int64 [B], exact."""
    _, items = chunks.argmax(
        lambda part: action @ unit_embeddings[part].T, unit_embeddings.shape[0], chunk_size
    )
    return items


def gaussian_mixture_log_density(
    action: torch.Tensor, env: Any, log_probs: Any, std: float
) -> torch.Tensor:
    """log sum_i p(i|s) N(action; e_i, std^2 I): [B], in nats w.r.t. Lebesgue measure.

    The density of an item's embedding plus isotropic Gaussian noise, when the item is
    drawn with log-probabilities `log_probs(items) -> [B, chunk]`; summed over the
    catalogue in chunks (|a - e|^2 expanded, so that no [B, chunk, d] tensor is built).
    """
    embeddings = env.catalogue.embeddings
    dim = action.shape[-1]
    action_sq = action.pow(2).sum(-1, keepdim=True)
    normaliser = 0.5 * dim * math.log(2.0 * math.pi * std * std)

    def log_joint(items: slice) -> torch.Tensor:
        means = embeddings[items]
        sq_dist = (action_sq - 2.0 * action @ means.T + means.pow(2).sum(-1)).clamp_min(0.0)
        return log_probs(items) - sq_dist / (2.0 * std * std) - normaliser

    return chunks.logsumexp(log_joint, embeddings.shape[0], env.chunk_size)

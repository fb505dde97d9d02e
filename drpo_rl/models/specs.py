"""What a model factory needs to know about an environment: observation and action sizes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrl.data import Categorical, OneHot, TensorSpec, Unbounded

from envs.common.checks import check_int

__all__ = ["PolicySpecs"]


@dataclass(frozen=True)
class PolicySpecs:
    """Sizes of an environment's observation and action, the input of every model factory.

    Exactly one of ``action_dim`` (continuous item-embedding action) and ``num_items``
    (item-id action) is set. ``item_embeddings`` (``[num_items, d]``) is optional: the
    two-tower categorical actor and critics score against it; for an embedding action it is
    the catalogue the action is decoded against (kept for analysis, not used by the models).

    Examples:
        >>> specs = PolicySpecs(obs_dim=16, action_dim=16)
        >>> specs.discrete, specs.action_spec.shape
        (False, torch.Size([16]))
        >>> PolicySpecs(obs_dim=16, num_items=50).action_spec.n
        50
    """

    obs_dim: int
    action_dim: int | None = None
    num_items: int | None = None
    item_embeddings: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_int("obs_dim", self.obs_dim)
        if (self.action_dim is None) == (self.num_items is None):
            raise ValueError(
                "exactly one of action_dim (embedding action) and num_items (item-id action) "
                f"must be given, got action_dim={self.action_dim}, num_items={self.num_items}"
            )
        check_int("action_dim", self.action_dim, optional=True)
        check_int("num_items", self.num_items, minimum=2, optional=True)
        if self.item_embeddings is not None:
            emb = self.item_embeddings
            if emb.ndim != 2:
                raise ValueError(
                    f"item_embeddings must be [num_items, d], got shape {tuple(emb.shape)}"
                )
            if self.num_items is not None and emb.shape[0] != self.num_items:
                raise ValueError(
                    f"item_embeddings has {emb.shape[0]} rows, expected num_items={self.num_items}"
                )

    @property
    def discrete(self) -> bool:
        """Whether the action is an item id (``True``) or an item embedding (``False``)."""
        return self.num_items is not None

    @property
    def action_spec(self) -> TensorSpec:
        """The unbatched spec of one action: ``Categorical(num_items)`` or ``Unbounded(d)``."""
        if self.discrete:
            return Categorical(self.num_items)
        return Unbounded(shape=(self.action_dim,))

    @classmethod
    def of(cls, env_or_specs) -> PolicySpecs:
        """``env_or_specs`` itself when it is a ``PolicySpecs``, else :meth:`from_env` of it."""
        if isinstance(env_or_specs, PolicySpecs):
            return env_or_specs
        return cls.from_env(env_or_specs)

    @classmethod
    def from_env(cls, env) -> PolicySpecs:
        """Read the sizes from a TorchRL env (batched or not).

        The env's ``catalogue.embeddings`` is kept when the env has a catalogue.
        """
        batch_dims = len(env.batch_size)
        obs_spec = env.observation_spec["observation"]
        obs_dim = int(obs_spec.shape[batch_dims:].numel())
        action_spec = env.full_action_spec[env.action_key]
        catalogue = getattr(env, "catalogue", None)
        item_embeddings = None if catalogue is None else catalogue.embeddings
        if isinstance(action_spec, Categorical):
            return cls(
                obs_dim=obs_dim, num_items=int(action_spec.n), item_embeddings=item_embeddings
            )
        if isinstance(action_spec, OneHot):
            raise ValueError(
                "one-hot item actions are not supported; build the env with integer item ids "
                "(Categorical action spec)"
            )
        action_dim = int(action_spec.shape[batch_dims:].numel())
        return cls(obs_dim=obs_dim, action_dim=action_dim, item_embeddings=item_embeddings)

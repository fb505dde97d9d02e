"""The network options every registry entry accepts, and the models they build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torchrl.modules import ProbabilisticActor, ValueOperator

from drpo_rl.models import (
    PolicySpecs,
    make_actor,
    make_qvalue_critic,
    make_sequence_actor,
    make_value_critic,
)

__all__ = ["NetworkOptions"]


@dataclass(frozen=True)
class NetworkOptions:
    """Sizes shared by the actor and critics of one algorithm (paper: 128 units, ReLU).

    ``head`` chooses, for item-id actions only, per-item output layers (``"per_item"``) or
    two-tower scoring against the catalogue embeddings (``"two_tower"``); it is the
    ``form`` argument of :func:`drpo_rl.models.make_item_scores`. Unset (``None``), it is
    the policy's own: ``"per_item"`` for the MLP, ``"two_tower"`` (SASRec's dot product)
    for the transformer; critics always default to ``"per_item"``.

    ``policy`` is the actor's backbone: ``"mlp"`` on the observation, or ``"transformer"``,
    the causal :class:`~drpo_rl.models.SessionEncoder` over the session history in the
    observation (``seq_dim`` wide, ``seq_layers`` blocks of ``seq_heads`` heads, dropout
    ``seq_dropout``) in front of the same head (:func:`~drpo_rl.models.make_sequence_actor`).

    Examples:
        >>> from drpo_rl.models import PolicySpecs
        >>> opts = NetworkOptions(num_cells=32, depth=3)
        >>> opts.actor(PolicySpecs(obs_dim=4, action_dim=2)).spec["action"].shape
        torch.Size([2])
        >>> seq = NetworkOptions(policy="transformer", seq_dim=16, seq_layers=1)
        >>> type(seq.actor(PolicySpecs(obs_dim=102, action_dim=16)).module[0].module[0])
        <class 'drpo_rl.models.sequence.SessionEncoder'>
    """

    num_cells: int = 128
    depth: int = 2
    head: Literal["per_item", "two_tower"] | None = None
    policy: Literal["mlp", "transformer"] = "mlp"
    seq_dim: int = 64
    seq_layers: int = 2
    seq_heads: int = 2
    seq_dropout: float = 0.0

    def _kwargs(self, specs: PolicySpecs, default_head: str = "per_item") -> dict:
        kwargs = {"num_cells": self.num_cells, "depth": self.depth}
        if specs.discrete:
            kwargs["form"] = self.head or default_head
        elif self.head not in (None, "per_item"):
            raise ValueError(
                f"head={self.head!r} applies to item-id actions only; this env has an "
                f"embedding action of dim {specs.action_dim}"
            )
        return kwargs

    def actor(self, specs: PolicySpecs, **kwargs) -> ProbabilisticActor:
        if self.policy == "transformer":
            return make_sequence_actor(
                specs,
                model_dim=self.seq_dim,
                layers=self.seq_layers,
                heads=self.seq_heads,
                dropout=self.seq_dropout,
                **self._kwargs(specs, default_head="two_tower"),
                **kwargs,
            )
        return make_actor(specs, **self._kwargs(specs), **kwargs)

    def value(self, specs: PolicySpecs) -> ValueOperator:
        return make_value_critic(specs, num_cells=self.num_cells, depth=self.depth)

    def qvalue(self, specs: PolicySpecs) -> ValueOperator:
        return make_qvalue_critic(specs, **self._kwargs(specs))

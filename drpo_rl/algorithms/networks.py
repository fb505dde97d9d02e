"""The network options every registry entry accepts, and the models they build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torchrl.modules import ProbabilisticActor, ValueOperator

from drpo_rl.models import PolicySpecs, make_actor, make_qvalue_critic, make_value_critic

__all__ = ["NetworkOptions"]


@dataclass(frozen=True)
class NetworkOptions:
    """Sizes shared by the actor and critics of one algorithm (paper: 128 units, ReLU).

    ``head`` chooses, for item-id actions only, per-item output layers (``"per_item"``) or
    two-tower scoring against the catalogue embeddings (``"two_tower"``); it is the
    ``form`` argument of :func:`drpo_rl.models.make_item_scores`.

    Examples:
        >>> from drpo_rl.models import PolicySpecs
        >>> opts = NetworkOptions(num_cells=32, depth=3)
        >>> opts.actor(PolicySpecs(obs_dim=4, action_dim=2)).spec["action"].shape
        torch.Size([2])
    """

    num_cells: int = 128
    depth: int = 2
    head: Literal["per_item", "two_tower"] = "per_item"

    def _kwargs(self, specs: PolicySpecs) -> dict:
        kwargs = {"num_cells": self.num_cells, "depth": self.depth}
        if specs.discrete:
            kwargs["form"] = self.head
        elif self.head != "per_item":
            raise ValueError(
                f"head={self.head!r} applies to item-id actions only; this env has an "
                f"embedding action of dim {specs.action_dim}"
            )
        return kwargs

    def actor(self, specs: PolicySpecs, **kwargs) -> ProbabilisticActor:
        return make_actor(specs, **self._kwargs(specs), **kwargs)

    def value(self, specs: PolicySpecs) -> ValueOperator:
        return make_value_critic(specs, num_cells=self.num_cells, depth=self.depth)

    def qvalue(self, specs: PolicySpecs) -> ValueOperator:
        return make_qvalue_critic(specs, **self._kwargs(specs))

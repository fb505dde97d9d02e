"""The user population: the preference vectors simulated users are drawn around."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from envs.catalogue import Catalogue


@dataclass(frozen=True)
class UserPopulation:
    """Who arrives: a table of unit preference vectors and how often each is picked.

    A new user picks row m with probability ``weights[m]``, adds isotropic Gaussian noise
    of standard deviation ``user_spread`` and is normalised (the rule is
    `envs.dynamics.sample_preferences`). The synthetic envs use the catalogue's mixture
    (`from_catalogue`: the rows are its centres); a data-fitted env uses its fitted users,
    so that with no spread every simulated user is one of them.

    Attributes:
        preferences: float32 [M, d], unit rows.
        weights: float32 [M], probabilities (>= 0, sum 1).

    Example:
        >>> import torch
        >>> from envs.population import UserPopulation
        >>> pop = UserPopulation.from_table(3 * torch.eye(3), torch.tensor([1.0, 1.0, 2.0]))
        >>> pop.preferences[0], pop.weights, pop.size
        (tensor([1., 0., 0.]), tensor([0.2500, 0.2500, 0.5000]), 3)
        >>> UserPopulation.from_table(torch.eye(3), torch.tensor([1.0, -1.0, 2.0]))
        Traceback (most recent call last):
        ...
        ValueError: user population weights: expected 3 finite numbers >= 0 with a positive \
sum (one per row), got weight 1 = -1.0
    """

    preferences: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> UserPopulation:
        """The synthetic population: the catalogue's mixture centres and weights."""
        return cls(preferences=catalogue.centres, weights=catalogue.mixture_weights)

    @classmethod
    def from_table(
        cls,
        preferences: torch.Tensor,
        weights: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> UserPopulation:
        """A checked population from a [M, d] table and [M] weights (None: uniform).

        The rows are scaled to unit length and the weights to sum 1; anything else
        (a zero or non-finite row, a negative weight, mismatched lengths) is a ValueError.
        """
        if not (
            isinstance(preferences, torch.Tensor)
            and preferences.is_floating_point()
            and preferences.dim() == 2
            and preferences.shape[0] >= 1
        ):
            shape = tuple(preferences.shape) if isinstance(preferences, torch.Tensor) else None
            raise ValueError(
                "user population preferences: expected a floating-point tensor [M, d] with "
                f"M >= 1, got {type(preferences).__name__} of shape {shape}"
            )
        norms = preferences.norm(dim=-1)
        bad = (~torch.isfinite(norms) | (norms == 0)).nonzero()
        if len(bad):
            raise ValueError(
                "user population preferences: expected finite rows of positive length, got "
                f"row {int(bad[0])} = {preferences[int(bad[0])].tolist()}"
            )
        m = preferences.shape[0]
        weights = torch.ones(m) if weights is None else torch.as_tensor(weights)
        expected = f"{m} finite numbers >= 0 with a positive sum (one per row)"
        if weights.shape != (m,):
            got = f"shape {tuple(weights.shape)}"
        elif len(bad := (~torch.isfinite(weights) | (weights < 0)).nonzero()):
            got = f"weight {int(bad[0])} = {float(weights[int(bad[0])])}"
        elif not float(weights.sum()) > 0:
            got = "weights that sum to 0"
        else:
            got = None
        if got is not None:
            raise ValueError(f"user population weights: expected {expected}, got {got}")
        weights = weights.to(torch.float32)
        return cls(
            preferences=torch.nn.functional.normalize(preferences.float(), dim=-1).to(device),
            weights=(weights / weights.sum()).to(device),
        )

    @functools.cached_property
    def cdf(self) -> torch.Tensor:
        """Cumulative weights [M], for drawing rows by inverse CDF."""
        return self.weights.cumsum(0)

    @property
    def size(self) -> int:
        return self.preferences.shape[0]

    @property
    def device(self) -> torch.device:
        return self.preferences.device

"""The item catalogue: embeddings from a mixture of Gaussians, Zipfian popularity."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from envs.config import RecSimConfig


@dataclass(frozen=True)
class Catalogue:
    """The items every simulated user is shown, with the mixture they were drawn from.

    Attributes:
        embeddings: float32 [N, d], item embeddings.
        unit_embeddings: float32 [N, d], the embeddings scaled to unit length (cosines).
        popularity: float32 [N], Zipfian probabilities (sum 1).
        cluster: int64 [N], the mixture component of each item.
        centres: float32 [C, d], unit-length mixture centres.
        mixture_weights: float32 [C], probabilities of the components (sum 1).

    Example:
        >>> from envs.catalogue import Catalogue
        >>> from envs.config import RecSimConfig
        >>> cat = Catalogue.from_config(RecSimConfig(num_items=30, embedding_dim=4))
        >>> cat.embeddings.shape, cat.num_items, round(float(cat.popularity.sum()), 5)
        (torch.Size([30, 4]), 30, 1.0)
    """

    embeddings: torch.Tensor
    unit_embeddings: torch.Tensor
    popularity: torch.Tensor
    cluster: torch.Tensor
    centres: torch.Tensor
    mixture_weights: torch.Tensor

    @classmethod
    def from_config(cls, config: RecSimConfig, device: torch.device | str = "cpu") -> Catalogue:
        """Draw the catalogue from `config.catalogue_seed` alone, then move it to `device`.

        Drawing on the CPU makes the catalogue identical whatever the device of the env.
        """
        gen = torch.Generator(device="cpu").manual_seed(config.catalogue_seed)
        n, d, c = config.num_items, config.embedding_dim, config.num_clusters
        if config.mixture_weights is None:
            weights = torch.full((c,), 1.0 / c)
        else:
            weights = torch.tensor(config.mixture_weights, dtype=torch.float32)
            weights = weights / weights.sum()
        centres = torch.nn.functional.normalize(torch.randn(c, d, generator=gen), dim=-1)
        cluster = torch.multinomial(weights, n, replacement=True, generator=gen)
        embeddings = centres[cluster] + config.cluster_spread * torch.randn(n, d, generator=gen)
        ranks = torch.randperm(n, generator=gen).to(torch.float32) + 1.0
        popularity = ranks.pow(-float(config.zipf_exponent))
        popularity = popularity / popularity.sum()
        return cls(
            embeddings=embeddings.to(device),
            unit_embeddings=torch.nn.functional.normalize(embeddings, dim=-1).to(device),
            popularity=popularity.to(device),
            cluster=cluster.to(device),
            centres=centres.to(device),
            mixture_weights=weights.to(device),
        )

    @functools.cached_property
    def popularity_cdf(self) -> torch.Tensor:
        """Cumulative popularity [N], for drawing items by popularity (inverse CDF)."""
        return self.popularity.cumsum(0)

    @property
    def num_items(self) -> int:
        return self.embeddings.shape[0]

    @property
    def num_clusters(self) -> int:
        return self.centres.shape[0]

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

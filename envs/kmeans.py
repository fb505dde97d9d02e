"""Spherical k-means: clusters of unit vectors by cosine, seeded and reproducible.

The data-fitted envs (:mod:`envs.fitted`) cluster the fitted users with it; each item's
cluster (what fatigue accumulates on) is then its nearest centre.
"""

from __future__ import annotations

import torch

__all__ = ["spherical_kmeans"]


def spherical_kmeans(points: torch.Tensor, k: int, seed: int, *, iterations: int = 50):
    """``k`` unit centres (1 <= k <= M) of the unit rows of ``points`` [M, d], with weights.

    Starts from ``k`` distinct rows drawn under ``seed``, then alternates ``iterations``
    times: assign each row to its nearest centre (largest inner product), move each centre
    to the normalised sum of its rows. A cluster left empty restarts at the rows their
    centres fit worst (the caller checks ``k``: it knows what the rows are).

    Returns:
        ``(centres [k, d], weights [k])``: the weights are the clusters' shares of the rows
        (float32, summing to 1).

    Example:
        >>> points = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> centres, weights = spherical_kmeans(points, 2, seed=0)
        >>> (points @ centres.T).argmax(-1).tolist(), weights.tolist()
        ([0, 0, 1, 1], [0.5, 0.5])
    """
    generator = torch.Generator().manual_seed(seed)
    centres = points[torch.randperm(points.shape[0], generator=generator)[:k]]
    for _ in range(iterations):
        assign = (points @ centres.T).argmax(dim=-1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        if empty.any():
            # An emptied cluster restarts at the points its centre fits worst.
            worst = (points * centres[assign]).sum(-1).argsort()[: int(empty.sum())]
            sums[empty] = points[worst]
        centres = torch.nn.functional.normalize(sums, dim=-1)
    assign = (points @ centres.T).argmax(dim=-1)
    weights = torch.bincount(assign, minlength=k).to(torch.float32)
    return centres, weights / weights.sum()

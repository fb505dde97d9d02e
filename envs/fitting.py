"""Fitting user and item vectors to a ratings log with the simulator's own reward rule.

:func:`fit_embeddings` fits one unit vector per user and per item (and the reward width
``delta``) so that the rule of the simulated users reproduces the ratings mapped onto
[0, 1]: rating01(u, i) ~ exp(-(1 - cos(u, i)) / (2 delta^2)), computed by
:func:`envs.dynamics.pair_affinity`, the env's rule for matched pairs (matrix factorisation
with the simulator's link; full-batch Adam, seeded, on the CPU). The data-fitted envs
(:mod:`envs.fitted`) run on the result; :mod:`envs.fit_cache` keeps it on the disk.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from envs import dynamics as rules
from envs.common.checks import check_int, fail, is_int, is_real
from envs.common.files import file_sha256
from envs.ratings import Ratings

__all__ = ["FitSettings", "FittedEmbeddings", "fit_embeddings"]


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit_embeddings` fits a ratings log.

    Attributes:
        embedding_dim: d, the length of the fitted vectors.
        steps: full-batch Adam steps.
        learning_rate: Adam's step size.
        delta: the reward width of the simulator's rule; ``None`` fits it with the vectors
            (from 0.5), a number keeps it fixed.
        holdout_fraction: share of the ratings (drawn at random) kept out of the fit to
            measure its error; 0 fits every rating.
        seed: seeds the held-out draw and the initial vectors.

    Example:
        >>> FitSettings(holdout_fraction=1.0)
        Traceback (most recent call last):
        ...
        ValueError: fit setting 'holdout_fraction': expected a number in [0, 1), got 1.0
    """

    embedding_dim: int = 16
    steps: int = 300
    learning_rate: float = 0.05
    delta: float | None = None
    holdout_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "steps"):
            check_int(f"fit setting {name!r}", getattr(self, name))
        lr, d, h = self.learning_rate, self.delta, self.holdout_fraction
        if not (is_real(lr) and math.isfinite(lr) and lr > 0):
            fail("fit setting 'learning_rate'", "a number > 0", lr)
        if not (d is None or (is_real(d) and math.isfinite(d) and d > 0)):
            fail("fit setting 'delta'", "None (fitted) or a number > 0", d)
        if not (is_real(h) and 0 <= h < 1):
            fail("fit setting 'holdout_fraction'", "a number in [0, 1)", h)
        if not is_int(self.seed):
            fail("fit setting 'seed'", "an integer", self.seed)


@dataclass(frozen=True)
class FittedEmbeddings:
    """User and item vectors fitted to a ratings log, with what the fit achieved.

    Attributes:
        users: float32 [U, d], unit rows, in the order of ``user_ids``.
        items: float32 [N, d], unit rows, in the order of ``item_ids``.
        delta: the reward width the vectors were fitted with.
        user_ids: int64 [U], the ids in the file (index -> id).
        item_ids: int64 [N], the ids in the file (index -> id).
        item_counts: int64 [N], ratings per item in the whole file.
        user_counts: int64 [U], ratings per user in the whole file.
        rmse: root mean squared error in rating units (e.g. stars) of the fitted rule, on
            the ratings fitted (``"train"``) and held out (``"heldout"``), and of the
            training mean rating on the held-out ratings (``"baseline"``); the held-out
            entries are NaN when nothing was held out.
        settings: the :class:`FitSettings` used.
        source: the ratings file (path, format, rating scale, SHA-256, rows).
        seconds: wall time of the fit.

    Examples:
        >>> import tempfile, pathlib
        >>> from envs.ratings import read_ratings
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> _ = f.write_text("user_id,item_id,rating\\n0,0,5\\n0,1,1\\n1,0,1\\n1,1,5\\n")
        >>> fit = fit_embeddings(read_ratings(f), FitSettings(embedding_dim=4, steps=200,
        ...                                                   holdout_fraction=0.0))
        >>> fit.users.shape, fit.items.shape, fit.rmse["train"] < 0.1  # stars
        (torch.Size([2, 4]), torch.Size([2, 4]), True)
        >>> fit.predict(torch.tensor([0, 0]), torch.tensor([0, 1])).round(decimals=2)
        tensor([1., 0.])
    """

    users: torch.Tensor
    items: torch.Tensor
    delta: float
    user_ids: torch.Tensor
    item_ids: torch.Tensor
    item_counts: torch.Tensor
    user_counts: torch.Tensor
    rmse: dict[str, float]
    settings: FitSettings
    source: dict
    seconds: float

    @property
    def num_users(self) -> int:
        return self.users.shape[0]

    @property
    def num_items(self) -> int:
        return self.items.shape[0]

    def predict(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        """Predicted ratings on the [0, 1] scale for pairs of indices (not file ids)."""
        return rules.pair_affinity(self.items[item_index], self.users[user_index], self.delta)


def fit_embeddings(ratings: Ratings, settings: FitSettings | None = None) -> FittedEmbeddings:
    """Fit unit user/item vectors (and delta) to ``ratings`` with the simulator's rule.

    Minimises the mean squared error between ``ratings.rating01`` and
    exp(-(1 - cos(u, i)) / (2 delta^2)) over the ratings not held out, by full-batch Adam
    from seeded Gaussian vectors. An id that only appears in held-out ratings keeps its
    random starting vector.
    """
    settings = FitSettings() if settings is None else settings
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    users = torch.as_tensor(ratings.user_index)
    items = torch.as_tensor(ratings.item_index)
    target = torch.as_tensor(ratings.rating01, dtype=torch.float32)
    order = torch.randperm(len(ratings), generator=generator)
    num_heldout = int(settings.holdout_fraction * len(ratings))
    heldout, train = order[:num_heldout], order[num_heldout:]
    d = settings.embedding_dim
    user_vectors = torch.nn.Parameter(torch.randn(ratings.num_users, d, generator=generator))
    item_vectors = torch.nn.Parameter(torch.randn(ratings.num_items, d, generator=generator))
    params = [user_vectors, item_vectors]
    if settings.delta is None:
        log_delta = torch.nn.Parameter(torch.tensor(math.log(0.5)))
        params.append(log_delta)
    else:
        log_delta = torch.tensor(math.log(settings.delta))
    optimiser = torch.optim.Adam(params, lr=settings.learning_rate)

    def predict(rows: torch.Tensor) -> torch.Tensor:
        # Normalising the U + N vectors once, then gathering, costs far less than
        # normalising R gathered rows.
        unit_users = torch.nn.functional.normalize(user_vectors, dim=-1)
        unit_items = torch.nn.functional.normalize(item_vectors, dim=-1)
        return rules.pair_affinity(
            unit_items[items[rows]], unit_users[users[rows]], log_delta.exp()
        )

    for _ in range(settings.steps):
        optimiser.zero_grad(set_to_none=True)
        loss = (predict(train) - target[train]).square().mean()
        loss.backward()
        optimiser.step()

    scale = ratings.rating_scale[1] - ratings.rating_scale[0]
    with torch.no_grad():
        rmse = {"train": _rmse(predict(train), target[train]) * scale}
        if num_heldout:
            rmse["heldout"] = _rmse(predict(heldout), target[heldout]) * scale
            baseline = target[train].mean().expand(num_heldout)
            rmse["baseline"] = _rmse(baseline, target[heldout]) * scale
        else:
            rmse["heldout"] = rmse["baseline"] = math.nan
        unit_users = torch.nn.functional.normalize(user_vectors, dim=-1)
        unit_items = torch.nn.functional.normalize(item_vectors, dim=-1)
    return FittedEmbeddings(
        users=unit_users.detach().contiguous(),
        items=unit_items.detach().contiguous(),
        delta=float(log_delta.detach().exp()),
        user_ids=torch.as_tensor(ratings.user_ids),
        item_ids=torch.as_tensor(ratings.item_ids),
        item_counts=torch.bincount(items, minlength=ratings.num_items),
        user_counts=torch.bincount(users, minlength=ratings.num_users),
        rmse=rmse,
        settings=settings,
        source=_source_of(ratings),
        seconds=time.perf_counter() - start,
    )


def _rmse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return float((prediction - target).square().mean().sqrt())


def _source_of(ratings: Ratings) -> dict:
    return {
        "path": str(Path(ratings.path).resolve()),
        "format": ratings.format,
        "rating_scale": list(ratings.rating_scale),
        "sha256": file_sha256(ratings.path),
        "rows": len(ratings),
    }

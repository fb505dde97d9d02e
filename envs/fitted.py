"""Data-fitted simulated users: the session dynamics of the suite on embeddings fitted to a
ratings log.

Three steps, each usable alone:

1. :func:`fit_embeddings` fits one unit vector per user and per item (and the reward width
   ``delta``) so that the simulator's own reward rule reproduces the ratings mapped onto
   [0, 1]: rating01(u, i) ~ exp(-(1 - cos(u, i)) / (2 delta^2)), computed by
   :func:`envs.dynamics.pair_affinity`, the env's rule for matched pairs (matrix
   factorisation with the simulator's link; full-batch Adam, seeded, on the CPU).
2. :func:`fitted_world` turns the fitted item vectors into a
   :class:`~envs.catalogue.Catalogue` (popularity: their frequency in the log; clusters for
   fatigue: spherical k-means of the fitted users, each item joining its nearest centre),
   and :func:`fitted_population` the fitted user vectors into the
   :class:`~envs.population.UserPopulation` simulated users are drawn from.
3. :class:`FittedRatings` runs the unchanged session core (:class:`~envs.simulator.
   SimulatedUsersEnv`) on that catalogue and population. :class:`MovieLens100K` is the
   same on the MovieLens-100K ratings shipped by the ``recbole`` package.

Fits are cached (:func:`load_or_fit`): a ``.pt`` of tensors (read back with
``weights_only=True``) beside a ``.json`` of the settings, keyed by the ratings file's
SHA-256 and the settings, so re-making an env does not refit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from envs import dynamics as rules
from envs.catalogue import Catalogue
from envs.config import UserSessionConfig, _is_int, _is_real, _require
from envs.population import UserPopulation
from envs.processes import process_alive
from envs.ratings import RATINGS_FORMATS, Ratings, file_sha256, read_ratings
from envs.simulator import SimulatedUsersEnv

__all__ = [
    "FitSettings",
    "FittedEmbeddings",
    "FittedRatings",
    "FittedRatingsConfig",
    "MovieLens100K",
    "default_cache_dir",
    "fit_embeddings",
    "fitted_env_classes",
    "fitted_population",
    "fitted_world",
    "load_or_fit",
    "recbole_ml100k_path",
]

# 2: user_counts stored with the vectors.
_CACHE_FORMAT = 2


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

    Examples:
        >>> FitSettings(embedding_dim=8).steps
        300
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
        def require(ok: bool, name: str, expected: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"fit setting {name!r}: expected {expected}, got {value!r}")

        for name in ("embedding_dim", "steps"):
            value = getattr(self, name)
            require(_is_int(value) and value >= 1, name, "an integer >= 1")
        lr = self.learning_rate
        require(_is_real(lr) and math.isfinite(lr) and lr > 0, "learning_rate", "a number > 0")
        d = self.delta
        require(
            d is None or (_is_real(d) and math.isfinite(d) and d > 0),
            "delta",
            "None (fitted) or a number > 0",
        )
        h = self.holdout_fraction
        require(_is_real(h) and 0 <= h < 1, "holdout_fraction", "a number in [0, 1)")
        require(_is_int(self.seed), "seed", "an integer")


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


def default_cache_dir() -> Path:
    """``$DRPO_RL_CACHE/fitted`` if set, else ``~/.cache/drpo_rl/fitted``."""
    root = os.environ.get("DRPO_RL_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "drpo_rl"
    return base / "fitted"


def load_or_fit(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    settings: FitSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FittedEmbeddings:
    """The fit of a ratings file, from the cache when this file and settings were fitted.

    The cache entry is ``<cache_dir>/<file stem>-<key>.pt`` (tensors) and ``.json``
    (settings, source, errors), where the key hashes the file's SHA-256, its format and
    rating scale, and the settings; a changed file or setting is a new entry. Each file is
    written as ``<file>.<pid>.partial`` and renamed; a failed write removes its partial
    file, and the next fit of the entry removes those a killed process left.
    """
    settings = FitSettings() if settings is None else settings
    cache = default_cache_dir() if cache_dir is None else Path(cache_dir)
    sha = file_sha256(path)
    scale = [float(v) for v in rating_scale]
    describe = {
        "cache_format": _CACHE_FORMAT,
        "sha256": sha,
        "format": format,
        "rating_scale": scale,
        "settings": dataclasses.asdict(settings),
    }
    key = hashlib.sha256(json.dumps(describe, sort_keys=True).encode()).hexdigest()[:16]
    stem = cache / f"{Path(path).stem}-{key}"
    tensors_file, meta_file = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if tensors_file.is_file() and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("key") == describe:
            tensors = torch.load(tensors_file, weights_only=True)
            return FittedEmbeddings(
                **tensors,
                delta=meta["delta"],
                rmse=meta["rmse"],
                settings=settings,
                source=meta["source"],
                seconds=meta["seconds"],
            )
    fit_started = time.time()
    fit = fit_embeddings(read_ratings(path, format=format, rating_scale=rating_scale), settings)
    cache.mkdir(parents=True, exist_ok=True)
    names = ("users", "items", "user_ids", "item_ids", "item_counts", "user_counts")
    tensors = {name: getattr(fit, name) for name in names}
    meta = {
        "key": describe,
        "delta": fit.delta,
        "rmse": fit.rmse,
        "source": fit.source,
        "seconds": fit.seconds,
        "torch": torch.__version__,
    }
    # Write beside, then rename: a reader never sees half a file, and two processes
    # fitting the same file at once both leave a complete entry.
    for target, write in (
        (tensors_file, lambda f: torch.save(tensors, f)),
        (meta_file, lambda f: f.write_text(json.dumps(meta, indent=2, sort_keys=True))),
    ):
        _remove_stale_partials(target, older_than=fit_started)
        partial = target.with_suffix(target.suffix + f".{os.getpid()}.partial")
        try:
            write(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return fit


def _remove_stale_partials(target: Path, *, older_than: float) -> None:
    """Deletes ``<target>.<pid>.partial`` files that no write will finish: left by a
    process that no longer runs (killed mid-write), or last written before ``older_than``
    (the start of this fit; a live writer's file is newer, and the pid of an old one may
    have been reused)."""
    prefix, suffix = f"{target.name}.", ".partial"
    for partial in target.parent.iterdir():
        name = partial.name
        pid = name[len(prefix) : -len(suffix)]
        if not (name.startswith(prefix) and name.endswith(suffix) and pid.isdigit()):
            continue
        try:
            stale = not process_alive(int(pid)) or partial.stat().st_mtime < older_than
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
        if stale:
            partial.unlink(missing_ok=True)


def fitted_world(
    fit: FittedEmbeddings,
    num_clusters: int,
    seed: int,
    *,
    iterations: int = 50,
    device: torch.device | str = "cpu",
) -> Catalogue:
    """The catalogue of the fitted items.

    Each item's popularity is its share of the ratings. Its cluster (what fatigue
    accumulates on) is its nearest (cosine) of ``num_clusters`` centres that spherical
    k-means (seeded, ``iterations`` rounds) finds among the fitted users: the catalogue's
    mixture centres, with the clusters' shares of users as mixture weights. Simulated users
    are drawn from the fitted users themselves (:func:`fitted_population`), not from this
    mixture.

    The clustering runs on the CPU (the same on every device); the catalogue is then
    moved to ``device``.
    """
    users, items = fit.users, fit.items
    if not 1 <= num_clusters <= fit.num_users:
        raise ValueError(
            f"num_clusters: expected an integer in [1, {fit.num_users}] (the fitted users), "
            f"got {num_clusters}"
        )
    generator = torch.Generator().manual_seed(seed)
    centres = users[torch.randperm(fit.num_users, generator=generator)[:num_clusters]]
    for _ in range(iterations):
        assign = (users @ centres.T).argmax(dim=-1)
        sums = torch.zeros_like(centres).index_add_(0, assign, users)
        counts = torch.bincount(assign, minlength=num_clusters)
        empty = counts == 0
        if empty.any():
            # An emptied cluster restarts at the users its centre fits worst.
            worst = (users * centres[assign]).sum(-1).argsort()[: int(empty.sum())]
            sums[empty] = users[worst]
        centres = torch.nn.functional.normalize(sums, dim=-1)
    assign = (users @ centres.T).argmax(dim=-1)
    weights = torch.bincount(assign, minlength=num_clusters).to(torch.float32)
    popularity = fit.item_counts.to(torch.float32)
    return Catalogue(
        embeddings=items.to(device, copy=True),
        unit_embeddings=items.to(device, copy=True),
        popularity=(popularity / popularity.sum()).to(device),
        cluster=(items @ centres.T).argmax(dim=-1).to(device),
        centres=centres.to(device),
        mixture_weights=(weights / weights.sum()).to(device),
    )


# How fitted_population weighs the fitted users.
USER_WEIGHTINGS = ("uniform", "activity")


def fitted_population(
    fit: FittedEmbeddings, weighting: str = "uniform", device: torch.device | str = "cpu"
) -> UserPopulation:
    """The fitted users as the population simulated users are drawn from.

    ``weighting``: ``"uniform"`` picks every fitted user equally often, ``"activity"`` in
    proportion to their number of ratings in the file.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> _ = f.write_text("user_id,item_id,rating\\n0,0,5\\n0,1,1\\n1,0,1\\n")
        >>> fit = fit_embeddings(read_ratings(f), FitSettings(embedding_dim=2, steps=5))
        >>> fitted_population(fit, "activity").weights
        tensor([0.6667, 0.3333])
    """
    if weighting not in USER_WEIGHTINGS:
        raise ValueError(f"weighting: expected one of {USER_WEIGHTINGS}, got {weighting!r}")
    counts = fit.user_counts if weighting == "activity" else None
    return UserPopulation.from_table(fit.users, counts, device=device)


# Fields of UserSessionConfig that describe the synthetic catalogue: the data replaces them.
_SYNTHETIC_ONLY = ("cluster_spread", "zipf_exponent", "mixture_weights")
# Fields the data decides when left at None.
_FROM_DATA = ("num_items", "delta")


@dataclass(frozen=True)
class FittedRatingsConfig(UserSessionConfig):
    """Configuration of :class:`FittedRatings`: a ratings file, its fit, and the session.

    The session fields are `UserSessionConfig`'s. `embedding_dim` is the fitted vectors'
    length, `catalogue_seed` seeds the fit and the clustering, `num_clusters` is the number
    of item clusters for fatigue (see `fitted_world`). Simulated users are the fitted users,
    picked uniformly or by `user_weighting="activity"` (their number of ratings), plus
    Gaussian noise of standard deviation `user_spread` (0: exactly a fitted user). Left at
    ``None``, `num_items` (the items of the file) and `delta` (fitted, unless `fit_delta`
    is False) come from the data; the env's `config` holds the values used, and building
    the env again from it reproduces the same env. `cluster_spread`, `zipf_exponent` and
    `mixture_weights` describe the synthetic catalogue and cannot be set here.

    Examples:
        >>> FittedRatingsConfig(ratings_path="u.data").fit_steps
        300
        >>> try:
        ...     FittedRatingsConfig(ratings_path="u.data", zipf_exponent=2.0)
        ... except ValueError as err:
        ...     print(str(err)[:50])
        config field 'zipf_exponent': expected its default
    """

    ratings_path: str | None = None
    ratings_format: str | None = None
    rating_scale: tuple[float, float] = (1.0, 5.0)
    fit_steps: int = 300
    fit_learning_rate: float = 0.05
    holdout_fraction: float = 0.1
    cache_dir: str | None = None
    fit_delta: bool = True
    num_items: int | None = None
    delta: float | None = None
    user_spread: float = 0.0
    user_weighting: str = "uniform"

    def _validate(self) -> None:
        # Validate the session fields with UserSessionConfig's own rules, data-decided
        # fields standing in with placeholders while unknown.
        session = {f.name: getattr(self, f.name) for f in dataclasses.fields(UserSessionConfig)}
        placeholders = {"num_items": 1, "delta": 1.0}
        for name in _FROM_DATA:
            if session[name] is None:
                session[name] = placeholders[name]
        UserSessionConfig(**session)
        defaults = UserSessionConfig()
        for name in _SYNTHETIC_ONLY:
            _require(
                getattr(self, name) == getattr(defaults, name),
                name,
                "its default: the item popularity is their frequency in the ratings and the "
                "users are the fitted users",
                getattr(self, name),
            )
        _require(
            isinstance(self.ratings_path, (str, os.PathLike)),
            "ratings_path",
            "the path of a ratings file",
            self.ratings_path,
        )
        object.__setattr__(self, "ratings_path", os.fspath(self.ratings_path))
        _require(
            self.ratings_format is None or self.ratings_format in RATINGS_FORMATS,
            "ratings_format",
            f"None (from the file name) or one of {RATINGS_FORMATS}",
            self.ratings_format,
        )
        scale = self.rating_scale
        _require(
            isinstance(scale, (tuple, list))
            and len(scale) == 2
            and all(_is_real(v) and math.isfinite(v) for v in scale)
            and scale[0] < scale[1],
            "rating_scale",
            "(lowest, highest) with lowest < highest",
            scale,
        )
        object.__setattr__(self, "rating_scale", tuple(float(v) for v in scale))
        _require(
            self.cache_dir is None or isinstance(self.cache_dir, (str, os.PathLike)),
            "cache_dir",
            "None (the default cache) or a folder",
            self.cache_dir,
        )
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        _require(isinstance(self.fit_delta, bool), "fit_delta", "True or False", self.fit_delta)
        _require(
            self.user_weighting in USER_WEIGHTINGS,
            "user_weighting",
            f"one of {USER_WEIGHTINGS}",
            self.user_weighting,
        )
        _require(
            self.fit_delta or self.delta is not None,
            "delta",
            "a number > 0 when fit_delta is False (the width to keep fixed)",
            self.delta,
        )
        # The fit's own checks name the field as a fit setting; name the config field.
        try:
            self.fit_settings()
        except ValueError as err:
            raise ValueError(f"config: {err}") from None

    def fit_settings(self) -> FitSettings:
        """The :class:`FitSettings` this config asks for."""
        return FitSettings(
            embedding_dim=self.embedding_dim,
            steps=self.fit_steps,
            learning_rate=self.fit_learning_rate,
            delta=None if self.fit_delta else self.delta,
            holdout_fraction=self.holdout_fraction,
            seed=self.catalogue_seed,
        )


class FittedRatings(SimulatedUsersEnv):
    """
    ## Description

    The `UserSession` dynamics (interest drift, cluster fatigue, patience) on users and
    items fitted to a real ratings log, so that simulated users like what the logged users
    liked. The fit (see `envs.fitted`) finds unit vectors for every user and item, and the
    reward width `delta`, such that the simulator's reward rule
    exp(-(1 - cos(e, u)) / (2 delta^2)) reproduces the ratings mapped onto [0, 1]. The
    catalogue is the fitted items (popularity: their frequency in the log); each simulated
    user is one of the fitted users (picked uniformly, or by their number of ratings), plus
    Gaussian noise of standard deviation `user_spread` if set.

    ## Action Space

    As `UserSession`: the item index in `[0, num_items)` (index i is the file's item id
    `env.fitted.item_ids[i]`), or an embedding with `action_type="embedding"`.

    ## Observation Space

    As `UserSession`, with d = `embedding_dim`: noisy user vector, the embeddings and
    rewards of the K most recent items, step / max_length.

    ## Rewards

    As `UserSession`: the fitted rule, damped by fatigue, plus noise, clipped to [0, 1].

    ## Starting State

    A fitted user (plus `user_spread` noise), zero fatigue, full patience, empty history.

    ## Episode End

    As `UserSession`.

    ## Arguments

    `FittedRatings(config)` or `envs.make_env("FittedRatings", ratings_path=...)`; the
    `UserSession` fields (except `cluster_spread`, `zipf_exponent`, `mixture_weights`) plus:

    | Parameter           | Type        | Default    | Description                           |
    |---------------------|-------------|------------|---------------------------------------|
    | `ratings_path`      | str         | (required) | a ratings file (see `envs.ratings`)   |
    | `ratings_format`    | str or None | None       | "ml-100k", "ml-1m", "recbole", "csv"  |
    | `rating_scale`      | (lo, hi)    | (1, 5)     | ratings map to (r - lo) / (hi - lo)   |
    | `embedding_dim`     | int         | 16         | length of the fitted vectors          |
    | `fit_steps`         | int         | 300        | full-batch Adam steps of the fit      |
    | `fit_learning_rate` | float       | 0.05       | Adam step size                        |
    | `holdout_fraction`  | float       | 0.1        | ratings held out to measure the fit   |
    | `catalogue_seed`    | int         | 0          | seeds the fit and the clustering      |
    | `num_clusters`      | int         | 8          | item clusters for fatigue             |
    | `num_items`         | int or None | None       | from the file (must match if given)   |
    | `fit_delta`         | bool        | True       | fit delta (else keep `delta` fixed)   |
    | `delta`             | float/None  | None       | the fitted width, or the fixed one    |
    | `user_spread`       | float       | 0.0        | noise around each fitted user         |
    | `user_weighting`    | str         | "uniform"  | or "activity": by ratings per user    |
    | `cache_dir`         | str or None | None       | where fits are cached                 |

    ```python
    >>> import tempfile, pathlib
    >>> from envs import make_env
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rows = [f"{u}\\t{i}\\t{1 + (u * i) % 5}\\t{u * 100 + i}" for u in range(12)
    ...         for i in range(9)]
    >>> _ = (folder / "u.data").write_text("\\n".join(rows) + "\\n")
    >>> env = make_env("FittedRatings", num_envs=3, seed=0, ratings_path=folder / "u.data",
    ...                embedding_dim=4, fit_steps=50, num_clusters=2, cache_dir=folder)
    >>> env.config.num_items, env.catalogue.embeddings.shape
    (9, torch.Size([9, 4]))
    >>> env.rollout(3)["next", "reward"].shape[-1]
    1

    ```

    ## Vectorized environment

    Batched over `num_envs` users on `device`, like every env of the suite.

    ## Version History

    * v0: initial version.
    """

    config_class = FittedRatingsConfig

    def __init__(
        self,
        config: FittedRatingsConfig | None = None,
        *,
        num_envs: int = 1,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        **options: object,
    ) -> None:
        config = self.checked_config(config)  # before the fit, which reads its fields
        fit = load_or_fit(
            config.ratings_path,
            format=config.ratings_format,
            rating_scale=config.rating_scale,
            settings=config.fit_settings(),
            cache_dir=config.cache_dir,
        )
        if config.num_items is not None and config.num_items != fit.num_items:
            raise ValueError(
                f"config field 'num_items': expected None or {fit.num_items} (the items of "
                f"{config.ratings_path}), got {config.num_items}"
            )
        if config.fit_delta and config.delta is not None:
            # A resolved config (env.config) names the fitted width; rebuilding from it
            # must reproduce that fit, not silently another one.
            if not math.isclose(config.delta, fit.delta, rel_tol=1e-6):
                raise ValueError(
                    f"config field 'delta': expected None or the fitted width {fit.delta} "
                    f"(fit_delta is True; pass fit_delta=False to fix delta), got "
                    f"{config.delta}"
                )
        # Set before the core's __init__, which calls the two hooks below.
        self.fitted = fit
        resolved = dataclasses.replace(config, num_items=fit.num_items, delta=fit.delta)
        super().__init__(resolved, num_envs=num_envs, device=device, seed=seed, **options)

    def _make_catalogue(self, config: FittedRatingsConfig) -> Catalogue:
        return fitted_world(
            self.fitted, config.num_clusters, config.catalogue_seed, device=self.device
        )

    def _make_population(self, config: FittedRatingsConfig, catalogue: Catalogue) -> UserPopulation:
        return fitted_population(self.fitted, config.user_weighting, device=self.device)


def recbole_ml100k_path() -> Path | None:
    """``ml-100k.inter`` of the installed ``recbole`` package, or None when absent.

    Found without importing recbole (whose import pulls in heavy dependencies).
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "dataset_example" / "ml-100k" / "ml-100k.inter"
        if path.is_file():
            return path
    return None


class MovieLens100K(FittedRatings):
    """`FittedRatings` on MovieLens-100K (943 users, 1682 movies, 100,000 ratings, 1-5).

    The ratings are read from the ``recbole`` package (``pip install --no-deps
    recbole==1.2.1``), which ships them as ``dataset_example/ml-100k/ml-100k.inter``;
    ``ratings_path`` may point elsewhere. Gymnasium id ``drpo_rl/MovieLens100K-v0``,
    registered when the file is found. All other arguments as `FittedRatings`.

    ```python
    >>> from envs import make_env
    >>> env = make_env("MovieLens100K", num_envs=2, seed=0)  # doctest: +SKIP
    >>> env.config.num_items  # doctest: +SKIP
    1682

    ```
    """

    @classmethod
    def default_config(cls, **overrides: object) -> FittedRatingsConfig:
        if overrides.get("ratings_path") is None:
            path = recbole_ml100k_path()
            if path is None:
                raise FileNotFoundError(
                    "MovieLens100K reads recbole/dataset_example/ml-100k/ml-100k.inter from "
                    "the recbole package, which is not installed: pip install --no-deps "
                    "recbole==1.2.1 (or pass ratings_path=)"
                )
            overrides["ratings_path"] = str(path)
        return super().default_config(**overrides)


def fitted_env_classes() -> dict[str, type[FittedRatings]]:
    """The data-fitted envs to register: ``FittedRatings`` always, ``MovieLens100K`` when
    the recbole files are found."""
    classes: dict[str, type[FittedRatings]] = {"FittedRatings": FittedRatings}
    if recbole_ml100k_path() is not None:
        classes["MovieLens100K"] = MovieLens100K
    return classes

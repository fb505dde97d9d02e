"""Data-fitted simulated users: the session dynamics of the suite on embeddings fitted to a
ratings log.

Three steps, each usable alone:

1. :func:`~envs.fitting.fit_embeddings` (:mod:`envs.fitting`) fits one unit vector per user
   and per item, and the reward width ``delta``, so that the simulator's own reward rule
   reproduces the ratings; :func:`~envs.fit_cache.load_or_fit` (:mod:`envs.fit_cache`)
   keeps fits on the disk, so re-making an env does not refit.
2. :func:`fitted_world` turns the fitted item vectors into a
   :class:`~envs.catalogue.Catalogue` (popularity: their frequency in the log; clusters for
   fatigue: spherical k-means of the fitted users, :mod:`envs.kmeans`, each item joining
   its nearest centre), and :func:`fitted_population` the fitted user vectors into the
   :class:`~envs.population.UserPopulation` simulated users are drawn from.
3. :class:`FittedRatings` runs the unchanged session core (:class:`~envs.simulator.
   SimulatedUsersEnv`) on that catalogue and population. :class:`MovieLens100K` is the
   same on the MovieLens-100K ratings shipped by the ``recbole`` package.

The names of steps 1 are importable from here too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from envs.catalogue import Catalogue
from envs.common.checks import check_choice, is_real
from envs.config import UserSessionConfig, require_field
from envs.fit_cache import default_cache_dir, load_or_fit, shared_fit
from envs.fitting import FitSettings, FittedEmbeddings, fit_embeddings
from envs.kmeans import spherical_kmeans
from envs.population import UserPopulation
from envs.ratings import RATINGS_FORMATS
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
    centres, weights = spherical_kmeans(users, num_clusters, seed, iterations=iterations)
    popularity = fit.item_counts.to(torch.float32)
    return Catalogue(
        embeddings=items.to(device, copy=True),
        unit_embeddings=items.to(device, copy=True),
        popularity=(popularity / popularity.sum()).to(device),
        cluster=(items @ centres.T).argmax(dim=-1).to(device),
        centres=centres.to(device),
        mixture_weights=weights.to(device),
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
        >>> from envs.ratings import read_ratings
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> _ = f.write_text("user_id,item_id,rating\\n0,0,5\\n0,1,1\\n1,0,1\\n")
        >>> fit = fit_embeddings(read_ratings(f), FitSettings(embedding_dim=2, steps=5))
        >>> fitted_population(fit, "activity").weights
        tensor([0.6667, 0.3333])
    """
    check_choice("weighting", weighting, USER_WEIGHTINGS)
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

    Example:
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
            require_field(
                getattr(self, name) == getattr(defaults, name),
                name,
                "its default: the item popularity is their frequency in the ratings and the "
                "users are the fitted users",
                getattr(self, name),
            )
        require_field(
            isinstance(self.ratings_path, (str, os.PathLike)),
            "ratings_path",
            "the path of a ratings file",
            self.ratings_path,
        )
        object.__setattr__(self, "ratings_path", os.fspath(self.ratings_path))
        require_field(
            self.ratings_format is None or self.ratings_format in RATINGS_FORMATS,
            "ratings_format",
            f"None (from the file name) or one of {RATINGS_FORMATS}",
            self.ratings_format,
        )
        scale = self.rating_scale
        require_field(
            isinstance(scale, (tuple, list))
            and len(scale) == 2
            and all(is_real(v) and math.isfinite(v) for v in scale)
            and scale[0] < scale[1],
            "rating_scale",
            "(lowest, highest) with lowest < highest",
            scale,
        )
        object.__setattr__(self, "rating_scale", tuple(float(v) for v in scale))
        require_field(
            self.cache_dir is None or isinstance(self.cache_dir, (str, os.PathLike)),
            "cache_dir",
            "None (the default cache) or a folder",
            self.cache_dir,
        )
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        require_field(
            isinstance(self.fit_delta, bool), "fit_delta", "True or False", self.fit_delta
        )
        require_field(
            self.user_weighting in USER_WEIGHTINGS,
            "user_weighting",
            f"one of {USER_WEIGHTINGS}",
            self.user_weighting,
        )
        require_field(
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
    liked. The fit (see `envs.fitting`) finds unit vectors for every user and item, and the
    reward width `delta`, such that the simulator's reward rule
    exp(-(1 - cos(e, u)) / (2 delta^2)) reproduces the ratings mapped onto [0, 1]. The
    catalogue is the fitted items (popularity: their frequency in the log); each simulated
    user is one of the fitted users (picked uniformly, or by their number of ratings), plus
    Gaussian noise of standard deviation `user_spread` if set.

    Fits are kept on the disk (`cache_dir`, see `envs.fit_cache`) and, within a process,
    shared by every env built from the same ratings file and fit settings: building the
    env again (as a benchmark does) neither re-reads, re-hashes nor refits the file.

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
        fit = shared_fit(
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
    always registered; without recbole and ``ratings_path``, making it raises a
    ``FileNotFoundError`` that says what to install. All other arguments as `FittedRatings`.

    With recbole installed, ``envs.make_env("MovieLens100K", num_envs=2, seed=0)`` gives
    an env of 1682 items; elsewhere, or for another MovieLens file, pass its path:

    ```python
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "ratings.dat").write_text("1::10::5::0\\n1::20::1::1\\n2::10::4::2\\n")
    >>> config = MovieLens100K.default_config(
    ...     ratings_path=folder / "ratings.dat", embedding_dim=2, fit_steps=5, num_clusters=1,
    ...     cache_dir=folder)
    >>> env = MovieLens100K(config, num_envs=2, seed=0)
    >>> env.config.ratings_format, env.config.num_items, env.fitted.item_ids.tolist()
    (None, 2, [10, 20])

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
    """The data-fitted envs to register, all of them whatever is installed: an env whose
    data is missing is listed and registered, and says what to install when made."""
    return {"FittedRatings": FittedRatings, "MovieLens100K": MovieLens100K}

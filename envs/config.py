"""Frozen dataclass configs of the simulated-user environments.

A config describes the simulated world (catalogue, users, reward, session dynamics); it is
validated at construction so that a bad value fails early with the name of the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from envs import actions
from envs.common.checks import check_choice, check_int, check_number, fail, is_int, is_real

#: Upper bounds of the size fields, checked before anything is allocated from them: a
#: history of 10**9 items or a catalogue of 10**12 would otherwise fail deep inside torch,
#: after minutes, for want of memory. The catalogue (items x embedding_dim float32) is also
#: bounded as a whole: MAX_CATALOGUE_VALUES is 4 GiB of embeddings.
MAX_NUM_ITEMS = 10**8
MAX_EMBEDDING_DIM = 4096
MAX_NUM_CLUSTERS = 10**6
MAX_CATALOGUE_VALUES = 2**30
MAX_LENGTH = 10**6
MAX_HISTORY_LENGTH = 1000


def _field(name: str) -> str:
    return f"config field {name!r}"


def require_field(condition: bool, field: str, expected: str, value: object) -> None:
    """The configs' check: unless `condition`, ValueError naming the config field."""
    if not condition:
        fail(_field(field), expected, value)


class UnknownConfigFieldError(ValueError, TypeError):
    """An override that is no field of the config.

    A `ValueError` (the suite's rule for bad input) that is also the `TypeError` Python
    raises for an unexpected keyword argument, so that callers probing keyword arguments
    (TorchRL's `GymEnv` tries `frameskip`) recognise it.

    Example:
        >>> from envs.config import RecSimConfig, UnknownConfigFieldError
        >>> try:
        ...     RecSimConfig.from_overrides(frameskip=4)
        ... except UnknownConfigFieldError as err:
        ...     print(isinstance(err, ValueError), isinstance(err, TypeError))
        True True
    """


@dataclass(frozen=True)
class SessionDynamics:
    """The session rules a config implies; the bandit is the session with this set to none.

    Not a user-facing config: `RecSimConfig.dynamics()` and `UserSessionConfig.dynamics()`
    build it so that one environment core serves both.

    Example:
        >>> from envs.config import RecSimConfig
        >>> bandit = RecSimConfig().dynamics()
        >>> bandit.max_length, bandit.history_length, bandit.static_users
        (1, 0, True)
    """

    max_length: int
    drift_rate: float
    fatigue_strength: float
    fatigue_decay: float
    patience: float
    history_length: int
    observe_step: bool
    #: Patience lost per unit of fatigue of the shown item's cluster (boredom).
    boredom: float = 0.0
    #: Whether reaching `max_length` truncates the episode (sessions: the cap is a limit
    #: of the log, not the user leaving) rather than terminating it (the one-step bandit).
    cap_truncates: bool = False

    @property
    def static_users(self) -> bool:
        """Whether the users' latent state can never change within an episode."""
        return self.drift_rate == 0.0 and not self.tracks_fatigue

    @property
    def tracks_fatigue(self) -> bool:
        """Whether the users keep a fatigue level per cluster (it damps rewards or bores)."""
        return self.fatigue_strength != 0.0 or self.boredom != 0.0


@dataclass(frozen=True)
class RecSimConfig:
    """Configuration of the paper's simulator (`RecSimBandit`, horizon 1).

    Catalogue: `num_clusters` centres drawn uniformly on the unit sphere of R^d; each item
    picks a centre with probability `mixture_weights` and adds isotropic Gaussian noise of
    standard deviation `cluster_spread` per coordinate. Popularity is Zipfian: the item of
    popularity rank k (ranks are a random permutation) has probability proportional to
    k^-zipf_exponent. The catalogue is drawn from `catalogue_seed` only.

    Users: a user picks a centre with probability `mixture_weights`; its latent preference
    u* is that centre plus Gaussian noise of standard deviation `user_spread`, normalised to
    unit length (users live near the clusters, so that some items suit them well). The
    observation is u* plus a per-user Gaussian offset of standard deviation
    `observation_noise`, drawn once at reset.

    Reward of item e: latent = exp(-(1 - cos(e, u*)) / (2 delta^2)); observed =
    clip(latent + N(0, reward_noise^2), 0, 1).

    Example:
        >>> from envs.config import RecSimConfig
        >>> RecSimConfig(num_items=50).num_items
        50
        >>> RecSimConfig(delta=0.0)
        Traceback (most recent call last):
        ...
        ValueError: config field 'delta': expected a finite number > 0, got 0.0
    """

    num_items: int = 100
    embedding_dim: int = 16
    num_clusters: int = 8
    mixture_weights: tuple[float, ...] | None = None
    cluster_spread: float = 0.15
    zipf_exponent: float = 1.0
    catalogue_seed: int = 0
    user_spread: float = 0.1
    delta: float = 0.5
    reward_noise: float = 0.1
    observation_noise: float = 0.1
    action_type: str = "embedding"  # a name of envs.actions.names()

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        for name, maximum in (
            ("num_items", MAX_NUM_ITEMS),
            ("embedding_dim", MAX_EMBEDDING_DIM),
            ("num_clusters", MAX_NUM_CLUSTERS),
        ):
            check_int(_field(name), getattr(self, name), maximum=maximum)
        values = self.num_items * self.embedding_dim
        if values > MAX_CATALOGUE_VALUES:
            fail(
                _field("num_items"),
                f"num_items x embedding_dim <= {MAX_CATALOGUE_VALUES} (4 GiB of float32 "
                f"embeddings; embedding_dim is {self.embedding_dim})",
                self.num_items,
            )
        if not is_int(self.catalogue_seed):
            fail(_field("catalogue_seed"), "an integer", self.catalogue_seed)
        if self.mixture_weights is not None:
            weights, name = self.mixture_weights, _field("mixture_weights")
            if not (isinstance(weights, (tuple, list)) and len(weights) == self.num_clusters):
                fail(
                    name, f"None or a sequence of num_clusters={self.num_clusters} numbers", weights
                )
            if not all(is_real(w) and math.isfinite(w) and w >= 0 for w in weights):
                fail(name, "finite numbers >= 0", weights)
            if not sum(weights) > 0:
                fail(name, "a positive sum", weights)
            # A list would make the frozen config unhashable; store the tuple it means.
            object.__setattr__(self, "mixture_weights", tuple(float(w) for w in weights))
        for name in ("cluster_spread", "user_spread", "reward_noise", "observation_noise"):
            check_number(_field(name), getattr(self, name), minimum=0)
        check_number(_field("delta"), self.delta, minimum=0, strict=True)
        check_number(_field("zipf_exponent"), self.zipf_exponent, minimum=0)
        check_choice(_field("action_type"), self.action_type, actions.names())

    def dynamics(self) -> SessionDynamics:
        """The bandit: one step, users never change, nothing but u* is observed."""
        return SessionDynamics(
            max_length=1,
            drift_rate=0.0,
            fatigue_strength=0.0,
            fatigue_decay=0.0,
            patience=math.inf,
            history_length=0,
            observe_step=False,
        )

    @classmethod
    def from_overrides(cls, **overrides: object) -> RecSimConfig:
        """Build a config from keyword overrides, naming the valid fields on a typo.

        Example:
            >>> from envs.config import UserSessionConfig
            >>> UserSessionConfig.from_overrides(max_length=3).max_length
            3
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise UnknownConfigFieldError(
                f"{cls.__name__} got an unexpected keyword argument {unknown[0]!r} (unknown "
                f"config field(s) {unknown}); valid fields: {valid}"
            )
        return cls(**overrides)


@dataclass(frozen=True)
class UserSessionConfig(RecSimConfig):
    """Configuration of multi-step sessions (`UserSession`) on the RecSim catalogue.

    Adds to `RecSimConfig` (whose catalogue, users and reward it shares):

    - `max_length`: the user leaves after this many items at most.
    - `drift_rate`: after consuming item e with observed reward r, the preference moves to
      normalise((1 - drift_rate * r) u + drift_rate * r * e / |e|).
    - `fatigue_strength`, `fatigue_decay`: each user keeps a fatigue level per cluster,
      f <- fatigue_decay * f + onehot(cluster of the shown item); an item's latent reward
      is multiplied by exp(-fatigue_strength * f[its cluster]).
    - `patience`: starting patience; each step costs (1 - r) + boredom * f[c] (f[c]: the
      fatigue of the shown item's cluster before it is shown), and the user leaves when it
      reaches 0 (a fully satisfying item of a fresh cluster costs nothing).
    - `boredom`: patience lost per unit of cluster fatigue: repeating a cluster bores the
      user into leaving even while its items still please (0: no boredom).
    - `history_length`: how many recent items the observation shows.

    Leaving (patience spent) terminates the session; reaching `max_length` truncates it.
    - `action_type` defaults to "item" here.

    Example:
        >>> from envs.config import UserSessionConfig
        >>> UserSessionConfig(max_length=1, drift_rate=0.0).dynamics().max_length
        1
        >>> UserSessionConfig(fatigue_decay=1.5)
        Traceback (most recent call last):
        ...
        ValueError: config field 'fatigue_decay': expected a number in [0, 1), got 1.5
    """

    action_type: str = "item"
    max_length: int = 20
    drift_rate: float = 0.1
    fatigue_strength: float = 0.3
    fatigue_decay: float = 0.8
    patience: float = 5.0
    history_length: int = 5
    boredom: float = 0.0

    def _validate(self) -> None:
        super()._validate()
        check_int(_field("max_length"), self.max_length, maximum=MAX_LENGTH)
        check_int(
            _field("history_length"), self.history_length, minimum=0, maximum=MAX_HISTORY_LENGTH
        )
        check_number(_field("drift_rate"), self.drift_rate, minimum=0, maximum=1)
        check_number(_field("fatigue_strength"), self.fatigue_strength, minimum=0)
        check_number(_field("boredom"), self.boredom, minimum=0)
        if not (is_real(self.fatigue_decay) and 0 <= self.fatigue_decay < 1):
            fail(_field("fatigue_decay"), "a number in [0, 1)", self.fatigue_decay)
        if not (is_real(self.patience) and self.patience > 0):
            fail(_field("patience"), "a number > 0 (math.inf for no leave model)", self.patience)

    def dynamics(self) -> SessionDynamics:
        return SessionDynamics(
            max_length=self.max_length,
            drift_rate=float(self.drift_rate),
            fatigue_strength=float(self.fatigue_strength),
            fatigue_decay=float(self.fatigue_decay),
            patience=float(self.patience),
            history_length=self.history_length,
            observe_step=True,
            boredom=float(self.boredom),
            cap_truncates=True,
        )

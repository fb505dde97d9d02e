"""`make_env` and `list_envs`: build any environment of the suite by name."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from envs.devices import check_device
from envs.fitted import fitted_env_classes
from envs.recsim_bandit import RecSimBandit, RecSimBanditDiscrete
from envs.simulator import SimulatedUsersEnv
from envs.user_session import UserSession

NAMESPACE = "drpo_rl"
VERSION = "v0"

# Name -> batched env class. A new environment of the suite adds its entry here; its
# Gymnasium id is then f"{NAMESPACE}/{name}-{VERSION}".
ENV_CLASSES: dict[str, type[SimulatedUsersEnv]] = {
    "RecSimBandit": RecSimBandit,
    "RecSimBanditDiscrete": RecSimBanditDiscrete,
    "UserSession": UserSession,
    **fitted_env_classes(),  # FittedRatings, MovieLens100K (its data checked when made)
}


def list_envs() -> list[str]:
    """The names `make_env` accepts (Gymnasium ids such as "drpo_rl/RecSimBandit-v0" too).

    Example:
        >>> from envs import list_envs
        >>> list_envs()[:4]
        ['RecSimBandit', 'RecSimBanditDiscrete', 'UserSession', 'FittedRatings']
    """
    return list(ENV_CLASSES)


def gym_id(name: str) -> str:
    """The Gymnasium id of an environment name: "drpo_rl/<name>-v0"."""
    return f"{NAMESPACE}/{name}-{VERSION}"


def resolve_name(name: str) -> str:
    """Map a name or a Gymnasium id (with or without "envs:" prefix) to a suite name."""
    base = name.split(":", 1)[1] if name.startswith("envs:") else name
    if base.startswith(f"{NAMESPACE}/") and base.endswith(f"-{VERSION}"):
        base = base[len(NAMESPACE) + 1 : -len(VERSION) - 1]
    if base not in ENV_CLASSES:
        valid = list_envs() + [gym_id(n) for n in ENV_CLASSES]
        raise ValueError(f"unknown environment {name!r}; valid names: {valid}")
    return base


def make_env(
    name: str,
    *,
    num_envs: int = 1,
    device: torch.device | str = "cpu",
    seed: int | None = None,
    privileged: Iterable[str] = (),
    chunk_size: int | None = None,
    **overrides: object,
) -> SimulatedUsersEnv:
    """Build the batched TorchRL env `name` for `num_envs` users on `device`.

    `overrides` are fields of the env's dataclass config (unknown ones raise `ValueError`
    listing the valid fields). `seed` seeds the env's own `torch.Generator`. A device that
    does not exist here raises `ValueError` listing the valid ones (`envs.devices`).
    `privileged` adds privileged keys to the outputs and `chunk_size` sets the items per
    chunk of catalogue-wide computations (see `SimulatedUsersEnv`).

    Example:
        >>> from envs import make_env
        >>> env = make_env("drpo_rl/RecSimBanditDiscrete-v0", num_envs=8, num_items=20)
        >>> env.batch_size, env.action_spec.space.n, env.config.num_items
        (torch.Size([8]), 20, 20)
    """
    cls = ENV_CLASSES[resolve_name(name)]
    device = check_device(device)
    config = cls.default_config(**overrides)
    return cls(
        config,
        num_envs=num_envs,
        device=device,
        seed=seed,
        privileged=privileged,
        chunk_size=chunk_size,
    )


@dataclass(frozen=True)
class EnvSpec:
    """Which simulated world to build: an environment name plus config overrides.

    The one value that code passes down instead of a name and a dict of overrides. It is
    checked when made (unknown name or field -> `ValueError`), hashable, and round-trips
    through JSON (`to_json` / `from_json`), so runs can record and compare it.

    Example:
        >>> from envs import EnvSpec
        >>> spec = EnvSpec("RecSimBanditDiscrete", {"num_items": 20})
        >>> spec.config.num_items, spec.make(num_envs=4, seed=0).batch_size
        (20, torch.Size([4]))
        >>> EnvSpec.from_json(spec.to_json()) == spec
        True
        >>> EnvSpec("RecSimBandit", {"num_itemz": 5})
        Traceback (most recent call last):
        ...
        envs.config.UnknownConfigFieldError: RecSimConfig got an unexpected keyword argument \
'num_itemz' ...
    """

    name: str
    overrides: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", resolve_name(self.name))
        if not isinstance(self.overrides, Mapping):
            raise ValueError(
                f"overrides: expected a mapping of config fields, got {self.overrides!r}"
            )
        # Sorted and frozen, so that equal specs hash equal whatever the order given.
        frozen = tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in self.overrides.items())
        )
        object.__setattr__(self, "overrides", _FrozenOverrides(frozen))
        self.config  # noqa: B018 - validates the overrides now, not at the first build

    @property
    def config(self):
        """The env's resolved config (defaults with the overrides applied)."""
        return ENV_CLASSES[self.name].default_config(**dict(self.overrides))

    def make(self, **kwargs: object) -> SimulatedUsersEnv:
        """`make_env(self.name, **kwargs, **self.overrides)`."""
        return make_env(self.name, **kwargs, **dict(self.overrides))

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "overrides": dict(self.overrides)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EnvSpec:
        data = json.loads(text)
        return cls(data["name"], data.get("overrides", {}))


class _FrozenOverrides(dict):
    """A read-only, hashable dict of config overrides (values must be hashable)."""

    def __init__(self, items: tuple) -> None:
        super().__init__(items)
        self._items = items

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._items)

    def _refuse(self, *args, **kwargs):
        raise TypeError("EnvSpec overrides are read-only; make a new EnvSpec")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self):
        # Pickled as its items: dict's own pickling would call the refused __setitem__.
        return (_FrozenOverrides, (self._items,))

    def __repr__(self) -> str:
        return repr(dict(self._items))

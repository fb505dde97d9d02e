"""`make_env` and `list_envs`: build any environment of the suite by name."""

from __future__ import annotations

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
    **fitted_env_classes(),  # FittedRatings; MovieLens100K where recbole's files are found
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
    **overrides: object,
) -> SimulatedUsersEnv:
    """Build the batched TorchRL env `name` for `num_envs` users on `device`.

    `overrides` are fields of the env's dataclass config (unknown ones raise `ValueError`
    listing the valid fields). `seed` seeds the env's own `torch.Generator`. A device that
    does not exist here raises `ValueError` listing the valid ones (`envs.devices`).

    Example:
        >>> from envs import make_env
        >>> env = make_env("drpo_rl/RecSimBanditDiscrete-v0", num_envs=8, num_items=20)
        >>> env.batch_size, env.action_spec.space.n, env.config.num_items
        (torch.Size([8]), 20, 20)
    """
    cls = ENV_CLASSES[resolve_name(name)]
    device = check_device(device)
    config = cls.default_config(**overrides)
    return cls(config, num_envs=num_envs, device=device, seed=seed)

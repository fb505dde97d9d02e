"""Name -> builder of every algorithm of the suite, and :func:`build`."""

from __future__ import annotations

import functools
import inspect

from drpo_rl.algorithms.algorithm import DEFAULT_BATCH_SIZE, DEFAULT_LR, Algorithm
from drpo_rl.algorithms.networks import NetworkOptions
from drpo_rl.algorithms.torchrl_baselines import (
    build_bc,
    build_bppo,
    build_cql,
    build_iql,
    build_ppo,
)
from drpo_rl.algorithms.weighted import LOSS_OPTIONS, build_advantage, build_drpo, build_drpo_q
from drpo_rl.models import PolicySpecs

__all__ = ["build", "list_algorithms", "options"]

_BUILDERS = {
    "drpo": functools.partial(build_drpo, weighting="drpo"),
    "drpo-exp": functools.partial(build_drpo, weighting="exp"),
    "adapt-bc": functools.partial(build_drpo, weighting="uniform"),
    "drpo-q": build_drpo_q,
    "bc": build_bc,
    "apg": functools.partial(build_advantage, rule="apg"),
    "awr": functools.partial(build_advantage, rule="awr"),
    "crr": functools.partial(build_advantage, rule="crr"),
    "asymre": functools.partial(build_advantage, rule="asymre"),
    "bppo": build_bppo,
    "iql": build_iql,
    "cql": build_cql,
    "ppo": build_ppo,
}

# Options every entry takes: network sizes and the paper's optimisation set-up.
_COMMON = {
    "lr": DEFAULT_LR,
    "batch_size": DEFAULT_BATCH_SIZE,
    "num_cells": NetworkOptions.num_cells,
    "depth": NetworkOptions.depth,
    "head": NetworkOptions.head,
}
_HEADS = ("per_item", "two_tower")
# Loss arguments that are wiring, not hyper-parameters.
_NOT_OPTIONS = {"critic_network", "reduction", "rule_kwargs"}


def _keyword_defaults(fn) -> dict:
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in _NOT_OPTIONS
    }


def list_algorithms() -> list[str]:
    """The valid names, sorted.

    Examples:
        >>> list_algorithms()[:4]
        ['adapt-bc', 'apg', 'asymre', 'awr']
    """
    return sorted(_BUILDERS)


def options(name: str) -> dict:
    """Every hyper-parameter ``name`` accepts, with its default (read from the builder's
    and, for the DRPO family and APG/AWR/CRR/AsymRe, the loss class's signature: defaults
    live in one place).

    Examples:
        >>> options("awr")["beta"], options("crr")["form"], options("bppo")["clip_epsilon"]
        (0.1, 'exp', 0.2)
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown algorithm {name!r}; valid names: {', '.join(list_algorithms())}")
    builder = _BUILDERS[name]
    fixed = builder.keywords if isinstance(builder, functools.partial) else {}
    target = builder.func if isinstance(builder, functools.partial) else builder
    found = dict(_COMMON)
    found.update({k: v for k, v in _keyword_defaults(target).items() if k not in fixed})
    if name in LOSS_OPTIONS:
        loss_class, exposed = LOSS_OPTIONS[name]
        defaults = _keyword_defaults(loss_class.__init__)
        found.update({k: v for k, v in defaults.items() if exposed is None or k in exposed})
    return found


def _check_common(resolved: dict) -> None:
    """The shared options' ranges, checked before any network is built."""
    for key in ("batch_size", "num_cells", "depth"):
        value = resolved[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key}: expected an integer >= 1, got {value!r}")
    lr = resolved["lr"]
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not 0 < lr < float("inf"):
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
    if resolved["head"] not in _HEADS:
        raise ValueError(f"head: expected one of {', '.join(_HEADS)}, got {resolved['head']!r}")


def build(name: str, env_or_specs, **hparams) -> Algorithm:
    """Build the algorithm ``name`` for an env (its specs are read) or a ``PolicySpecs``.

    Every entry accepts ``lr`` (3e-4), ``batch_size`` (320), ``num_cells`` (128), ``depth``
    (2 hidden layers) and ``head`` (item-id actions: ``"per_item"`` or ``"two_tower"``
    logits/Q heads); :func:`options` lists an entry's own (``beta``, ``clip_epsilon``,
    ``expectile``...). Unknown names or options raise ``ValueError`` listing the valid
    ones, and so do out-of-range shared options (``batch_size``, ``num_cells``, ``depth``
    >= 1, ``lr`` > 0, ``head``), before anything is built. The resolved options are kept
    in ``Algorithm.hparams``.

    Examples:
        >>> from drpo_rl.models import PolicySpecs
        >>> algo = build("iql", PolicySpecs(obs_dim=4, action_dim=2), expectile=0.9)
        >>> algo.hparams["expectile"], algo.hparams["lr"]
        (0.9, 0.0003)
        >>> build("dqn", PolicySpecs(obs_dim=4, action_dim=2))
        Traceback (most recent call last):
        ...
        ValueError: unknown algorithm 'dqn'; valid names: adapt-bc, apg, asymre, awr, bc, ...
    """
    resolved = options(name)
    unknown = sorted(set(hparams) - set(resolved))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for algorithm {name!r}; valid options: "
            f"{', '.join(sorted(resolved))}"
        )
    resolved.update(hparams)
    _check_common(resolved)
    specs = PolicySpecs.of(env_or_specs)
    net = NetworkOptions(
        num_cells=resolved["num_cells"], depth=resolved["depth"], head=resolved["head"]
    )
    specific = {k: v for k, v in resolved.items() if k not in _COMMON}
    parts = _BUILDERS[name](specs, net, **specific)
    algo = parts.algorithm(name, resolved["lr"], resolved["batch_size"])
    algo.hparams = resolved
    return algo

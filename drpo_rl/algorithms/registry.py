"""The one list of the suite's algorithms (:data:`ALGORITHMS`), and :func:`build`.

A new baseline is one :class:`Entry` in :data:`ALGORITHMS`: its builder, the builder's fixed
keywords, the loss class whose keyword defaults are its hyper-parameters (if any), and
whether it trains online. Everything else (names, options, the offline subset) is read
from that table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drpo_rl.algorithms.algorithm import DEFAULT_BATCH_SIZE, DEFAULT_LR, Algorithm
from drpo_rl.algorithms.networks import NetworkOptions
from drpo_rl.algorithms.scores import SCORES, TD_SCORE_KEY, check_td_lambda
from drpo_rl.algorithms.torchrl_baselines import (
    build_bc,
    build_bppo,
    build_cql,
    build_iql,
    build_ppo,
)
from drpo_rl.algorithms.weighted import (
    DRPO_OPTIONS,
    DRPO_Q_OPTIONS,
    build_advantage,
    build_drpo,
    build_drpo_q,
)
from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY
from drpo_rl.models import PolicySpecs, SessionLayout
from drpo_rl.objectives import APGLoss, AsymReLoss, AWRLoss, CRRLoss, DRPOLoss
from envs.common.checks import check_choice, check_int, check_number

__all__ = [
    "ALGORITHMS",
    "Entry",
    "build",
    "check_logged_keys",
    "list_algorithms",
    "offline_algorithms",
    "options",
    "resolve_options",
    "session_defaults",
]


@dataclass(frozen=True)
class Entry:
    """One algorithm of the registry.

    Attributes:
        builder: ``builder(specs, net, **fixed, **hparams) -> AlgorithmParts``.
        fixed: keywords that select this entry's variant of a shared builder.
        loss_options: ``(loss class, exposed keywords or None for all)`` when the entry's
            hyper-parameters are keywords of a loss class (their defaults are read there).
        online: ``True`` when it trains on fresh rollouts (PPO), not on offline logs.
        needs: logged keys it reads besides observation, action, reward and done (BPPO's
            importance ratio reads the behaviour propensity).
        sequence: ``True`` when its actor may be the transformer (``policy="transformer"``,
            sized by the ``seq_*`` options): the entries whose only network is the actor.

    Example:
        >>> ALGORITHMS["drpo-exp"].fixed, ALGORITHMS["ppo"].online
        ({'weighting': 'exp'}, True)
        >>> sorted(options("drpo-exp"))[:4]  # the builder's, the loss's and the shared options
        ['adapt_lambda', 'adaptive', 'batch_size', 'beta']
    """

    builder: Callable[..., Any]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    loss_options: tuple[type, tuple[str, ...] | None] | None = None
    online: bool = False
    needs: tuple[str, ...] = ()
    sequence: bool = False


ALGORITHMS: dict[str, Entry] = {
    "drpo": Entry(build_drpo, {"weighting": "drpo"}, (DRPOLoss, DRPO_OPTIONS), sequence=True),
    "drpo-exp": Entry(build_drpo, {"weighting": "exp"}, (DRPOLoss, DRPO_OPTIONS), sequence=True),
    "adapt-bc": Entry(
        build_drpo, {"weighting": "uniform"}, (DRPOLoss, DRPO_OPTIONS), sequence=True
    ),
    "drpo-q": Entry(build_drpo_q, loss_options=(DRPOLoss, DRPO_Q_OPTIONS)),
    "bc": Entry(build_bc, sequence=True),
    "apg": Entry(build_advantage, {"rule": "apg"}, (APGLoss, None)),
    "awr": Entry(build_advantage, {"rule": "awr"}, (AWRLoss, None)),
    "crr": Entry(build_advantage, {"rule": "crr"}, (CRRLoss, None)),
    "asymre": Entry(build_advantage, {"rule": "asymre"}, (AsymReLoss, None)),
    "bppo": Entry(build_bppo, needs=(BEHAVIOR_LOG_PROB_KEY,)),
    "iql": Entry(build_iql),
    "cql": Entry(build_cql),
    "ppo": Entry(build_ppo, online=True),
}

# Options every entry takes: network sizes and the paper's optimisation set-up.
_COMMON = {
    "lr": DEFAULT_LR,
    "batch_size": DEFAULT_BATCH_SIZE,
    "num_cells": NetworkOptions.num_cells,
    "depth": NetworkOptions.depth,
    "head": NetworkOptions.head,
    "policy": NetworkOptions.policy,
}
# The transformer's sizes, options of the entries with ``sequence=True`` only.
_SEQUENCE = {
    "seq_dim": NetworkOptions.seq_dim,
    "seq_layers": NetworkOptions.seq_layers,
    "seq_heads": NetworkOptions.seq_heads,
    "seq_dropout": NetworkOptions.seq_dropout,
}
# The options that are fields of NetworkOptions.
_NETWORK = (set(_COMMON) | set(_SEQUENCE)) - {"lr", "batch_size"}
_HEADS = ("per_item", "two_tower")
_POLICIES = ("mlp", "transformer")
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
    return sorted(ALGORITHMS)


def offline_algorithms() -> list[str]:
    """The names that train on offline logs (all but the online ones, e.g. PPO), sorted.

    Read from the table: nothing is built to answer.

    Examples:
        >>> "drpo" in offline_algorithms(), "ppo" in offline_algorithms()
        (True, False)
    """
    return [name for name in list_algorithms() if not ALGORITHMS[name].online]


def _entry(name: str) -> Entry:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid names: {', '.join(list_algorithms())}")
    return ALGORITHMS[name]


def options(name: str) -> dict:
    """Every hyper-parameter ``name`` accepts, with its default (read from the builder's
    and, for the DRPO family and APG/AWR/CRR/AsymRe, the loss class's signature: defaults
    live in one place).

    Examples:
        >>> options("awr")["beta"], options("crr")["form"], options("bppo")["clip_epsilon"]
        (0.1, 'exp', 0.2)
    """
    entry = _entry(name)
    found = dict(_COMMON)
    if entry.sequence:
        found.update(_SEQUENCE)
    found.update(
        {k: v for k, v in _keyword_defaults(entry.builder).items() if k not in entry.fixed}
    )
    if entry.loss_options is not None:
        loss_class, exposed = entry.loss_options
        defaults = _keyword_defaults(loss_class.__init__)
        found.update({k: v for k, v in defaults.items() if exposed is None or k in exposed})
    return found


def session_defaults(name: str) -> dict:
    """The options ``name`` takes by default on session logs: filters and advantages rank
    rows by their return-to-go, not by the immediate reward (docs/method.md, "Sessions").

    Examples:
        >>> session_defaults("drpo"), session_defaults("awr"), session_defaults("iql")
        ({'score': 'return_to_go'}, {'score': 'return_to_go'}, {})
    """
    return {"score": "return_to_go"} if "score" in options(name) else {}


def check_logged_keys(name: str, hparams: Mapping[str, Any], logged: set) -> None:
    """``ValueError`` naming what ``name`` (with ``hparams``) reads that the logs lack
    (``logged``: their keys), before anything is trained.

    Examples:
        >>> check_logged_keys("bppo", {}, {"observation", "action"})
        Traceback (most recent call last):
        ...
        ValueError: bppo: needs the logged 'behavior_log_prob' (the behaviour policy's ...
        >>> check_logged_keys("drpo", {"score": "return_to_go"}, {"observation"})
        Traceback (most recent call last):
        ...
        ValueError: drpo: score='return_to_go' needs the logged 'return_to_go', which ...
    """
    entry = _entry(name)
    for key in entry.needs:
        if key not in logged:
            raise ValueError(
                f"{name}: needs the logged {key!r} (the behaviour policy's log-propensity of "
                "each logged action), which these logs lack"
            )
    key = SCORES.get(hparams.get("score", "reward"))
    if key is not None and key != TD_SCORE_KEY and key not in logged:
        raise ValueError(
            f"{name}: score={hparams['score']!r} needs the logged {key!r}, which these logs "
            "lack (one-step logs store none: there it equals the reward, score='reward')"
        )


def _check_common(name: str, resolved: dict) -> None:
    """The shared options' ranges, checked before any network is built."""
    for key in ("batch_size", "num_cells", "depth"):
        check_int(key, resolved[key])
    check_number("lr", resolved["lr"], minimum=0, strict=True)
    if resolved["head"] is not None and resolved["head"] not in _HEADS:
        raise ValueError(f"head: expected one of {', '.join(_HEADS)}, got {resolved['head']!r}")
    check_choice("policy", resolved["policy"], _POLICIES)
    if resolved["policy"] == "transformer" and not ALGORITHMS[name].sequence:
        supported = [n for n in list_algorithms() if ALGORITHMS[n].sequence]
        raise ValueError(
            f"policy: 'transformer' is supported by {', '.join(supported)} (their only network "
            f"is the actor), not by {name!r}; use policy='mlp'"
        )
    if ALGORITHMS[name].sequence:
        for key in ("seq_dim", "seq_layers", "seq_heads"):
            check_int(key, resolved[key])
        check_number("seq_dropout", resolved["seq_dropout"], minimum=0, maximum=1)
        if resolved["seq_dim"] % resolved["seq_heads"]:
            raise ValueError(
                f"seq_heads: expected a divisor of seq_dim={resolved['seq_dim']}, got "
                f"{resolved['seq_heads']}"
            )


def resolve_options(name: str, env_or_specs=None, **hparams) -> dict:
    """Every option of ``name`` with ``hparams`` applied, checked without building anything:
    unknown options and out-of-range shared ones raise ``ValueError``, and so does
    ``policy="transformer"`` for an env (or ``PolicySpecs``), when one is given, whose
    observation does not carry a session history. A benchmark config calls it when it is
    made, so a bad option fails there, not mid-run.

    Examples:
        >>> resolve_options("bc", policy="transformer")["seq_layers"]
        2
        >>> resolve_options("awr", policy="transformer")
        Traceback (most recent call last):
        ...
        ValueError: policy: 'transformer' is supported by adapt-bc, bc, drpo, drpo-exp (their ...
    """
    resolved = options(name)
    unknown = sorted(set(hparams) - set(resolved))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for algorithm {name!r}; valid options: "
            f"{', '.join(sorted(resolved))}"
        )
    resolved.update(hparams)
    _check_common(name, resolved)
    if ALGORITHMS[name].builder is build_advantage:  # their TD(lambda) score (PPO's is GAE's)
        check_td_lambda(resolved["score"], resolved["lmbda"])
    if resolved["policy"] == "transformer" and env_or_specs is not None:
        try:
            SessionLayout.of(PolicySpecs.of(env_or_specs))
        except ValueError as error:
            raise ValueError(
                f"policy: 'transformer' reads the session history in the observation: {error}"
            ) from error
    return resolved


def build(name: str, env_or_specs, **hparams) -> Algorithm:
    """Build the algorithm ``name`` for an env (its specs are read) or a ``PolicySpecs``.

    Every entry accepts ``lr`` (3e-4), ``batch_size`` (320), ``num_cells`` (128), ``depth``
    (2 hidden layers), ``head`` (item-id actions: ``"per_item"`` or ``"two_tower"``
    logits/Q heads; unset: the policy's own) and ``policy`` (``"mlp"``; DRPO, DRPO-Exp,
    AdaptBC and BC also ``"transformer"``, sized by ``seq_dim``, ``seq_layers``,
    ``seq_heads``, ``seq_dropout``: see :class:`NetworkOptions`); :func:`options` lists an
    entry's own (``beta``, ``clip_epsilon``, ``expectile``...). Unknown names or options
    raise ``ValueError`` listing the valid ones, and so do out-of-range shared options
    (``batch_size``, ``num_cells``, ``depth`` >= 1, ``lr`` > 0, ``head``, ``policy``),
    before anything is built (:func:`resolve_options`). The resolved options are kept in
    ``Algorithm.hparams``.

    Examples:
        >>> from drpo_rl.models import PolicySpecs, SessionLayout
        >>> algo = build("iql", PolicySpecs(obs_dim=4, action_dim=2), expectile=0.9)
        >>> algo.hparams["expectile"], algo.hparams["lr"]
        (0.9, 0.0003)
        >>> build("dqn", PolicySpecs(obs_dim=4, action_dim=2))
        Traceback (most recent call last):
        ...
        ValueError: unknown algorithm 'dqn'; valid names: adapt-bc, apg, asymre, awr, bc, ...
    """
    resolved = resolve_options(name, env_or_specs, **hparams)
    specs = PolicySpecs.of(env_or_specs)
    net = NetworkOptions(**{k: v for k, v in resolved.items() if k in _NETWORK})
    specific = {k: v for k, v in resolved.items() if k not in _COMMON and k not in _NETWORK}
    parts = ALGORITHMS[name].builder(specs, net, **ALGORITHMS[name].fixed, **specific)
    algo = parts.algorithm(name, resolved["lr"], resolved["batch_size"])
    algo.hparams = resolved
    return algo

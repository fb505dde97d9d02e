"""``off_policy_evaluate``: a policy's value estimated from logs alone, with intervals.

The steps, top to bottom: read and check the logs (:mod:`.logged`), find the policy's item
distribution on the logged states (:mod:`.target`), form the importance weights
``w = pi(item | x) / mu(item | x)``, fit the reward model / FQE's Q when a model-based
estimator asks for one (:mod:`.fqe`), build each estimator's terms (:mod:`.estimators`) and
its interval (:mod:`.intervals`). Weights are never clipped except by the estimators whose
definition clips (``clipped-ips``, ``switch-dr``); how large they get is in every estimate's
diagnostics.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tensordict import TensorDictBase

from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY, settings_differences
from drpo_rl.evaluation.off_policy import estimators as est
from drpo_rl.evaluation.off_policy.fqe import fitted_q
from drpo_rl.evaluation.off_policy.intervals import INTERVALS
from drpo_rl.evaluation.off_policy.intervals import interval as make_interval
from drpo_rl.evaluation.off_policy.logged import LoggedSessions, read_logs
from drpo_rl.evaluation.off_policy.names import (
    BANDIT_ESTIMATORS,
    DEFAULT_CLIP,
    ESTIMATORS,
    MODEL_BASED,
    SESSION_ESTIMATORS,
)
from drpo_rl.evaluation.off_policy.reward_model import ItemValueModel
from drpo_rl.evaluation.off_policy.target import TargetItems, policy_device, target_items
from envs.common.checks import check_choice, check_int, check_number


@dataclass
class OffPolicyEstimate:
    """One estimator's estimate of the policy's value, and its ``1 - alpha`` interval.

    ``value`` is the mean reward per interaction for horizon-1 logs, the mean (discounted)
    session return for session logs: what :func:`~drpo_rl.evaluation.evaluate` reports as
    ``reward`` and ``return``. ``diagnostics``: ``num_sessions``, ``num_steps``, and for
    the weighted estimators ``ess`` (effective sample size ``(sum w)^2 / sum w^2`` of the
    weights, per session their product), ``max_weight``, ``mean_weight`` and
    ``clipped_share``; ``reward_model_rmse`` (held-out) for the model-based ones;
    ``mc_samples`` and ``mc_std_error`` when the policy's item distribution was sampled.

    Example:
        >>> e = OffPolicyEstimate("ips", 0.5, 0.4, 0.6, 0.05, "t", 0.05, {"ess": 10.0})
        >>> e.to_dict()["value"], e.covers(0.55), e.covers(0.7)
        (0.5, True, False)
    """

    estimator: str
    value: float
    low: float
    high: float
    std_error: float
    interval: str
    alpha: float
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def covers(self, truth: float) -> bool:
        """Whether the interval holds ``truth``."""
        return self.low <= truth <= self.high


def off_policy_evaluate(
    policy,
    logs,
    *,
    estimators: Sequence[str] | None = None,
    reward_model: ItemValueModel | None = None,
    alpha: float = 0.05,
    interval: str = "bootstrap",
    num_bootstrap: int = 1000,
    seed: int = 0,
    deterministic: bool = True,
    env=None,
    num_items: int | None = None,
    clip: float = DEFAULT_CLIP,
    gamma: float = 1.0,
    mc_samples: int = 256,
    propensity_key: str = BEHAVIOR_LOG_PROB_KEY,
    log_propensity: bool = True,
) -> dict[str, OffPolicyEstimate]:
    """Estimate ``policy``'s value from ``logs`` with each of ``estimators``.

    Args:
        policy: a TorchRL policy writing ``"action"`` (an item id, or an item embedding);
            a ``ProbabilisticActor`` for ``deterministic=False``.
        logs: an :class:`~drpo_rl.data.OfflineLogs` or its rows (a TensorDict ``[R]``, or
            session streams ``[env, time]`` with ``("collector", "traj_ids")``), with
            ``"observation"``, ``"action"``, ``("next", "reward")`` and the behaviour's
            ``propensity_key``.

    Keyword Args:
        estimators: names among :data:`ESTIMATORS`; default :data:`BANDIT_ESTIMATORS` for
            horizon-1 logs, :data:`SESSION_ESTIMATORS` for sessions.
        reward_model: a fitted :class:`ItemValueModel` (:func:`fit_reward_model`) for the
            model-based estimators, used as it is (for sessions: the policy's Q); default:
            fitted here on the logs (a held-out split picks its epoch).
        alpha: ``1 - alpha`` intervals. interval: ``"bootstrap"`` (percentile,
            ``num_bootstrap`` resamples from ``seed``) or ``"t"`` (Student-t).
        seed: the reward model's split and initialisation, the bootstrap, the Monte-Carlo
            draws.
        deterministic: the policy as :func:`~drpo_rl.evaluation.evaluate` runs it (mean or
            mode); ``False``: its sampling distribution (exact for item ids, ``mc_samples``
            draws per state for a Gaussian over embeddings).
        env: an env (or :class:`envs.EnvSpec`, or a name) of the logs' world: its catalogue
            decodes embedding actions and gives the reward model item features. Default: the
            env recorded in generated logs' metadata.
        num_items: the catalogue size, when neither ``env`` nor the logs' metadata give it.
        clip: the weight threshold of ``clipped-ips`` and ``switch-dr``.
        gamma: discount of session returns (1: the undiscounted return ``evaluate()``
            reports).
        propensity_key, log_propensity: where the behaviour's propensity is, and whether it
            is a log-probability (the suite's ``behavior_log_prob``) or a probability.

    Returns:
        ``{estimator: OffPolicyEstimate}`` in the order asked.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> g = torch.Generator().manual_seed(0)
        >>> item = torch.randint(2, (4000,), generator=g)  # uniform behaviour, 2 items
        >>> logs = TensorDict({"observation": torch.zeros(4000, 1), "action": item,
        ...                    "behavior_log_prob": torch.full((4000,), 0.5).log(),
        ...                    ("next", "reward"): (item == 1).float()[:, None]}, [4000])
        >>> item_1 = TensorDictModule(lambda o: torch.ones(o.shape[0], dtype=torch.long),
        ...                           in_keys=["observation"], out_keys=["action"])
        >>> out = off_policy_evaluate(item_1, logs, estimators=("ips", "snips"), num_items=2)
        >>> ips = out["ips"]
        >>> out["snips"].value, ips.covers(1.0), round(ips.diagnostics["max_weight"], 6)
        (1.0, True, 2.0)
    """
    check_choice("interval", interval, INTERVALS)
    check_number("alpha", alpha, minimum=0.0, maximum=1.0, strict=True)
    check_number("clip", clip, minimum=0.0, strict=True, finite=False)
    check_number("gamma", gamma, minimum=0.0, maximum=1.0)
    check_int("num_bootstrap", num_bootstrap)
    check_int("mc_samples", mc_samples)
    logged, catalogue_env = _read(
        logs,
        env,
        num_items,
        device=policy_device(policy, torch.device("cpu")),
        propensity_key=propensity_key,
        log_propensity=log_propensity,
    )
    catalogue = getattr(catalogue_env, "catalogue", None)
    num_items, device = logged.num_items, logged.item.device
    names = _estimator_names(estimators, logged.horizon)
    if logged.dropped_sessions:
        warnings.warn(
            f"logs: {logged.dropped_sessions} session(s) the log stream stopped before their "
            f"end are left out ({logged.num_sessions} complete sessions evaluated)",
            stacklevel=2,
        )
    flat = logged.rows.reshape(-1)
    target = target_items(
        policy,
        flat,
        logged.item.reshape(-1),
        num_items=num_items,
        deterministic=deterministic,
        unit_embeddings=None if catalogue is None else catalogue.unit_embeddings.to(device),
        chunk_size=getattr(catalogue_env, "chunk_size", 4096),
        mc_samples=mc_samples,
        seed=seed,
    )
    pi = target.logged.reshape(logged.item.shape)
    w = torch.where(logged.mask, pi / logged.propensity, 1.0)
    q = v = None
    rmse = math.nan
    if any(name in MODEL_BASED for name in names):
        model, fit = _model(reward_model, logged, catalogue, seed)
        q, v = fitted_q(logged, target, model, gamma=gamma, seed=seed, fit=fit)
        rmse = model.heldout_rmse
    results = {}
    for name in names:
        terms = _terms(name, logged, w, q, v, clip=clip, gamma=gamma)
        low, high, se = make_interval(
            terms, interval, alpha=alpha, num_bootstrap=num_bootstrap, seed=seed
        )
        diagnostics = _diagnostics(terms, logged, target, w, q, name)
        if name in MODEL_BASED:
            diagnostics["reward_model_rmse"] = rmse
        results[name] = OffPolicyEstimate(
            name, terms.value(), low, high, se, interval, alpha, diagnostics
        )
    return results


def fit_reward_model(logs, *, env=None, num_items: int | None = None, seed: int = 0):
    """The reward model ``off_policy_evaluate`` would fit on horizon-1 ``logs`` (to reuse on
    several policies, or to hold fixed across calls); its held-out RMSE is ``heldout_rmse``.
    """
    logged, catalogue_env = _read(logs, env, num_items, device=torch.device("cpu"))
    catalogue = getattr(catalogue_env, "catalogue", None)
    if logged.horizon != 1:
        raise ValueError(
            "logs: sessions; their model is the evaluated policy's Q (FQE), which "
            "off_policy_evaluate fits for each policy"
        )
    model, _ = _model(None, logged, catalogue, seed)
    target = TargetItems(logged=torch.ones(logged.num_sessions), items=logged.item)
    fitted_q(logged, target, model, gamma=1.0, seed=seed)
    return model


def _read(logs, env, num_items, *, device, **options) -> tuple[LoggedSessions, Any]:
    """The checked logs on ``device`` and the env of their catalogue (None if unknown)."""
    rows, metadata = _rows_and_metadata(logs)
    catalogue_env = _catalogue_env(env, metadata)
    catalogue = getattr(catalogue_env, "catalogue", None)
    config = getattr(catalogue_env, "config", None)
    logged = read_logs(
        rows.to(device),
        num_items=_num_items(num_items, catalogue, metadata),
        embeddings=None if catalogue is None else catalogue.embeddings.to(device),
        session_cap=config.dynamics().max_length if hasattr(config, "dynamics") else None,
        **options,
    )
    return logged, catalogue_env


def _rows_and_metadata(logs) -> tuple[TensorDictBase, dict]:
    if isinstance(logs, TensorDictBase):
        return logs, {}
    metadata = getattr(logs, "metadata", None)
    if metadata is None:
        raise ValueError(
            f"logs: expected OfflineLogs or a TensorDict of logged rows, got {type(logs).__name__}"
        )
    return logs[:], metadata


def _catalogue_env(env, metadata: dict):
    """The env whose catalogue the logs index: ``env`` as given, else the one recorded in
    generated logs' metadata; None when neither is known."""
    from envs import EnvSpec

    recorded = metadata.get("env")
    if not isinstance(recorded, dict) or "name" not in recorded:
        recorded = None
    if env is None:
        if recorded is None:
            return None
        env = EnvSpec(recorded["name"], recorded.get("config", {}))
    if isinstance(env, str):
        env = EnvSpec(env)
    if isinstance(env, EnvSpec):
        env = env.make()
    if recorded is not None and isinstance(recorded.get("config"), dict):
        config = dataclasses.asdict(env.config) if dataclasses.is_dataclass(env.config) else {}
        differences = settings_differences(recorded["config"], config)
        if differences:
            raise ValueError(
                "env: the logs were generated in another world than the policy's env "
                f"(logs' metadata.json vs env): {'; '.join(differences)}"
            )
    return env


def _num_items(num_items, catalogue, metadata) -> int:
    if catalogue is not None:
        found = int(catalogue.embeddings.shape[0])
        if num_items is not None and num_items != found:
            raise ValueError(
                f"num_items: expected the env's catalogue size {found}, got {num_items}"
            )
        return found
    if num_items is None:
        num_items = metadata.get("num_items")
    if num_items is None:
        raise ValueError(
            "num_items: the logs' catalogue size is unknown (no env= and no 'num_items' in "
            "the logs' metadata); pass num_items= or env="
        )
    return check_int("num_items", num_items)


def _estimator_names(estimators, horizon: int) -> tuple[str, ...]:
    if estimators is None:
        return BANDIT_ESTIMATORS if horizon == 1 else SESSION_ESTIMATORS
    if isinstance(estimators, str):
        estimators = (estimators,)
    for name in estimators:
        check_choice("estimators", name, ESTIMATORS)
        if horizon > 1 and name not in SESSION_ESTIMATORS:
            raise ValueError(
                f"estimators: {name!r} is a horizon-1 estimator and these logs hold sessions "
                f"of up to {horizon} steps; expected one of {list(SESSION_ESTIMATORS)}"
            )
    return tuple(estimators)


def _model(given, logged: LoggedSessions, catalogue, seed: int):
    """``(model, whether to fit it)``: the given model, checked, or a new one."""
    obs_dim = int(logged.rows.get("observation").shape[-1])
    if given is None:
        # Initialised from ``seed``, leaving the caller's random stream as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ItemValueModel(
                obs_dim=obs_dim,
                num_items=logged.num_items,
                item_embeddings=None if catalogue is None else catalogue.embeddings,
            )
        return model, True
    if (given.obs_dim, given.num_items) != (obs_dim, logged.num_items):
        raise ValueError(
            f"reward_model: made for observations of width {given.obs_dim} and "
            f"{given.num_items} items, the logs have {obs_dim} and {logged.num_items}: it "
            "belongs to other logs"
        )
    if given.fitted_on != logged.fingerprint:
        warnings.warn(
            f"reward_model: fitted on other logs (fingerprint {given.fitted_on or 'none'}, "
            f"these logs {logged.fingerprint}); its errors there are not these logs' "
            "(held-out RMSE as fitted)",
            stacklevel=3,
        )
    return given, False


def _terms(name, logged: LoggedSessions, w, q, v, *, clip: float, gamma: float) -> est.Terms:
    r = logged.reward
    if name == "dm":
        return est.dm(v[:, 0])
    if name == "dr":
        return est.session_dr(w, r, q, v, logged.mask, gamma)
    if name == "pdis":
        return est.pdis(w, r, gamma)
    if name == "wpdis":
        return est.wpdis(w, r, gamma)
    if name == "ips":
        return est.ips(w, r)
    if name == "snips":
        return est.snips(w, r)
    if name == "clipped-ips":
        return est.clipped_ips(w, r, clip)
    if name == "sndr":
        return est.sndr(w, r, q, v)
    return est.switch_dr(w, r, q, v, clip)


def _diagnostics(terms, logged: LoggedSessions, target: TargetItems, w, q, name) -> dict:
    out: dict[str, Any] = {
        "num_sessions": logged.num_sessions,
        "num_steps": int(logged.mask.sum()),
    }
    if logged.dropped_sessions:
        out["dropped_sessions"] = logged.dropped_sessions
    weights = terms.weights
    if weights is not None:
        total, square = weights.sum().item(), weights.pow(2).sum().item()
        out["ess"] = total**2 / square if square > 0 else 0.0
        out["max_weight"] = weights.max().item()
        out["mean_weight"] = weights.mean().item()
        out["clipped_share"] = (
            0.0 if terms.clipped is None else terms.clipped.double().mean().item()
        )
    if target.mc_samples:
        out["mc_samples"] = target.mc_samples
        if logged.horizon == 1 and weights is not None:
            # Monte-Carlo variance of each weight times what it multiplies, rows independent.
            residual = logged.reward if q is None else logged.reward - q
            var_w = target.mc_variance.reshape(w.shape) / logged.propensity**2
            out["mc_std_error"] = (
                residual.pow(2) * var_w
            ).sum().sqrt().item() / logged.num_sessions
    return out

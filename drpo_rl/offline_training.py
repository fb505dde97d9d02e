"""Training a registry algorithm on an offline-logs dataset, without a simulator.

:func:`train_on_logs` runs the benchmark's training loop
(:func:`drpo_rl.benchmark.training.train`: same sampling, checkpoints and resume) on the
``"train"`` split of any :class:`~drpo_rl.data.OfflineLogs` (generated, or loaded with
:func:`~drpo_rl.data.load_interactions` and the shipped loaders; logs without a
``"split"`` key train on every row). At every evaluation point it scores the policy on the
validation split, logs the point with a TorchRL logger, keeps the best policy and stops
early when ``patience`` points pass without a better score. The run folder holds:

====================  ==========================================================
``config.json``       algorithm, resolved hyper-parameters, sizes, observation layout,
                      raw item ids: what :func:`drpo_rl.load_policy` rebuilds it from
``policy.pt``         the best policy's weights (plain tensors)
``tables.pt``         item embeddings / user vectors, where the observation needs them
``metrics.json``      the learning curve, the best point, the test-split estimates
``checkpoint.pt``     the training state while unfinished (``resume=True`` continues)
``<logger>/``         the TorchRL logger's files (CSV by default)
====================  ==========================================================

The validation score is the reward-weighted hit rate at ``k``: over validation rows, the
sum of rewards of the rows whose logged item is in the policy's top-``k``, divided by the
sum of rewards. It needs no propensity and no simulator; it rewards ranking the items
users liked high.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY
from drpo_rl.evaluation import off_policy_evaluate
from drpo_rl.evaluation.off_policy.estimators import Terms
from drpo_rl.evaluation.off_policy.intervals import interval
from drpo_rl.serving import CONFIG_FILE, POLICY_FILE, TABLES_FILE, item_scores, policy_specs
from envs.common.checks import check_choice, check_int, check_number
from envs.common.files import write_atomic

__all__ = ["LOGGERS", "logged_value", "estimates_on_test_split", "train_on_logs"]

METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"
#: TorchRL logger types ``logger=`` takes (TensorBoard and W&B need their packages).
LOGGERS = ("csv", "tensorboard", "wandb", "none")
# Algorithms whose losses read the behaviour's log-probability.
_NEEDS_PROPENSITY = {"bppo": "BPPO's ratio to the behaviour policy"}
_SPLIT_TRAIN, _SPLIT_VALIDATION, _SPLIT_TEST = 0, 1, 2


def train_on_logs(
    logs: Any,
    out: str | os.PathLike,
    *,
    algorithm: str = "drpo",
    steps: int = 2000,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    hparams: Mapping[str, Any] | None = None,
    eval_points: int = 20,
    patience: int | None = 5,
    k: int = 10,
    validation_rows: int = 50_000,
    logger: str = "csv",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``algorithm`` on ``logs`` (an :class:`~drpo_rl.data.OfflineLogs` or its
    folder) into the run folder ``out`` (see the module docstring); returns the metrics.

    Args:
        steps: gradient updates at most; ``eval_points`` evaluations along the way.
        patience: evaluations without a better validation score before stopping (None:
            never stop early).
        k: the cut-off of the validation hit rate.
        validation_rows: at most this many validation rows (the first ones) are scored.
        logger: a TorchRL logger type of :data:`LOGGERS`.
        resume: continue an unfinished run of ``out`` made with the same arguments.

    Raises:
        ValueError: an unknown algorithm, one that needs propensities the logs lack, a
            finished run at ``out``, or an unfinished one without ``resume=True``.
    """
    from drpo_rl.algorithms import offline_algorithms
    from drpo_rl.algorithms.algorithm import DEFAULT_BATCH_SIZE, DEFAULT_LR
    from drpo_rl.benchmark.training import train
    from drpo_rl.data import OfflineLogs

    check_choice("algorithm", algorithm, offline_algorithms())
    check_int("steps", steps)
    check_int("eval_points", eval_points)
    check_int("patience", patience, optional=True)
    check_int("k", k)
    check_choice("logger", logger, LOGGERS)
    logs = logs if isinstance(logs, OfflineLogs) else OfflineLogs(logs)
    device = torch.device(device)
    rows = logs[:].reshape(-1)
    if algorithm in _NEEDS_PROPENSITY and "behavior_log_prob" not in rows.keys():
        raise ValueError(
            f"algorithm: {algorithm!r} needs propensities ({_NEEDS_PROPENSITY[algorithm]}); "
            f"{logs.root} has no behavior_log_prob (its log had no propensity column)"
        )
    splits = _splits(rows)
    tables = _tables(logs)
    config = _config(logs, rows, algorithm, hparams or {}, tables)
    config.update(
        steps=steps,
        batch_size=batch_size or DEFAULT_BATCH_SIZE,
        lr=lr or DEFAULT_LR,
        seed=seed,
        eval_points=eval_points,
        patience=patience,
        k=k,
        validation_rows=validation_rows,
    )
    out = Path(out)
    state = _prepare(out, config, resume)
    if tables:
        torch.save(tables, out / TABLES_FILE)
    specs = policy_specs(config, tables)
    validation = splits[_SPLIT_VALIDATION][:validation_rows].to(device)
    embeddings = tables.get("item_embeddings") if config["action"] == "embedding" else None
    tracker = _Tracker(out, config, logger, patience, progress, state)

    def evaluate_policy(policy, final: bool) -> dict[str, float]:
        tracker.bind(policy)
        if len(validation) == 0:
            return {}
        return {"validation_hit_rate": validation_hit_rate(policy, validation, k, embeddings)}

    try:
        result = train(
            algorithm,
            splits[_SPLIT_TRAIN],
            specs,
            steps=steps,
            batch_size=config["batch_size"],
            lr=config["lr"],
            seed=seed,
            device=device,
            hparams=dict(hparams or {}),
            curve_points=eval_points,
            evaluate_policy=evaluate_policy,
            on_checkpoint=tracker.checkpoint,
            resume=None if state is None else state["training"],
            on_point=tracker.point,
        )
    finally:
        tracker.close()
    metrics = {
        "algorithm": algorithm,
        "steps_done": result["curve"][-1]["step"],
        "stopped_early": result["curve"][-1]["step"] < steps,
        "best": tracker.best,
        "curve": result["curve"],
        "train_rows": result["train_rows"],
        "validation_rows": len(validation),
        "train_seconds": result["train_seconds"],
        "test": estimates_on_test_split(tracker.best_policy(specs), splits[_SPLIT_TEST], config),
    }
    _write_json(out / METRICS_FILE, metrics)
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return metrics


def validation_hit_rate(policy, rows: TensorDictBase, k: int, item_embeddings=None) -> float:
    """Reward-weighted hit rate at ``k`` of ``policy`` on ``rows`` (module docstring).

    Example:
        >>> from tensordict import TensorDict
        >>> from drpo_rl.algorithms import build
        >>> from drpo_rl.models import PolicySpecs
        >>> policy = build("bc", PolicySpecs(obs_dim=2, num_items=3), num_cells=4).policy
        >>> rows = TensorDict({"observation": torch.zeros(2, 2),
        ...                    "action": torch.tensor([0, 1]),
        ...                    ("next", "reward"): torch.tensor([[1.0], [0.0]])}, [2])
        >>> validation_hit_rate(policy, rows, k=3)  # every item is in the top 3
        1.0
    """
    reward = rows["next", "reward"].reshape(-1).float()
    total = float(reward.sum())
    if total == 0:
        return 0.0
    hits = torch.zeros_like(reward)
    with torch.no_grad():
        for start in range(0, len(rows), 4096):
            part = rows[start : start + 4096]
            scores = item_scores(policy, part["observation"], item_embeddings)
            top = scores.topk(min(k, scores.shape[-1]), dim=-1).indices
            action = _item_of(part)
            hits[start : start + 4096] = (top == action.unsqueeze(-1)).any(-1).float()
    return float((hits * reward).sum()) / total


def _item_of(rows: TensorDictBase) -> torch.Tensor:
    # Item-id logs: the action; embedding-action logs keep the item shown at ("next", "item").
    action = rows["action"]
    return action if action.dtype == torch.int64 and action.dim() == 1 else rows["next", "item"]


def logged_value(
    rows: TensorDictBase, *, alpha: float = 0.05, replicates: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The behaviour policy's logged value on ``rows``: the mean reward per row, with a
    ``1 - alpha`` percentile interval from a bootstrap over trajectories (rows of one
    trajectory are not independent, so whole trajectories are resampled: the mean is the
    ratio of the trajectories' reward sums to their sizes, bootstrapped as the off-policy
    estimators' ratios are, :func:`~drpo_rl.evaluation.off_policy.intervals.interval`).

    Example:
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({("next", "reward"): torch.tensor([[1.0], [0.0], [1.0], [1.0]]),
        ...                    ("collector", "traj_ids"): torch.tensor([0, 0, 1, 1])}, [4])
        >>> found = logged_value(rows)
        >>> found["value"], found["trajectories"], found["low"] <= 0.75 <= found["high"]
        (0.75, 2, True)
    """
    check_number("alpha", alpha, minimum=0, maximum=1, strict=True)
    reward = rows["next", "reward"].reshape(-1).double()
    if reward.numel() == 0:
        return {"value": None, "low": None, "high": None, "rows": 0, "trajectories": 0}
    traj = rows.get(("collector", "traj_ids"), None)
    traj = torch.arange(reward.numel()) if traj is None else traj.reshape(-1)
    _, group = torch.unique(traj, return_inverse=True)
    count = int(group.max()) + 1
    sums = torch.zeros(count, dtype=torch.float64).index_add_(0, group, reward)
    sizes = torch.bincount(group, minlength=count).double()
    ratio = Terms(a=sums[:, None], b=sizes[:, None])
    low, high, _ = interval(ratio, "bootstrap", alpha=alpha, num_bootstrap=replicates, seed=seed)
    return {
        "value": float(reward.mean()),
        "low": low,
        "high": high,
        "alpha": alpha,
        "rows": int(reward.numel()),
        "trajectories": count,
        "interval": f"percentile bootstrap over trajectories, {replicates} replicates",
    }


def estimates_on_test_split(policy, test_rows: TensorDictBase, config: dict) -> dict[str, Any]:
    """The run's estimates on the held-out test split, simulator-free.

    ``"logged"``: the behaviour policy's value (:func:`logged_value`). ``"off_policy"``: the
    trained policy's off-policy estimates (:func:`~drpo_rl.evaluation.off_policy_evaluate`,
    its default estimators, each a dict with ``value``, ``low``, ``high`` and
    ``diagnostics``), or ``{"skipped": why}`` when the test split cannot give them: no
    rows, no logged propensities, or embedding actions (their decoding needs the world's
    catalogue env: call ``off_policy_evaluate(policy, logs, env=...)`` yourself).
    """
    estimates = {"logged": logged_value(test_rows), "off_policy": None}
    if len(test_rows) == 0:
        why = "the test split is empty"
    elif BEHAVIOR_LOG_PROB_KEY not in test_rows.keys():
        why = f"the logs carry no propensities ({BEHAVIOR_LOG_PROB_KEY!r})"
    elif config["action"] != "item":
        why = "embedding actions: decoding them needs the world's catalogue env"
    else:
        found = off_policy_evaluate(policy, test_rows, num_items=config["num_items"])
        estimates["off_policy"] = {name: e.to_dict() for name, e in found.items()}
        return estimates
    estimates["off_policy"] = {"skipped": why}
    return estimates


def _splits(rows: TensorDictBase) -> list[TensorDictBase]:
    if "split" not in rows.keys():
        empty = rows[:0]
        return [rows, empty, empty]
    split = rows["split"].reshape(-1)
    return [rows[split == index] for index in (_SPLIT_TRAIN, _SPLIT_VALIDATION, _SPLIT_TEST)]


def _tables(logs) -> dict[str, torch.Tensor]:
    from drpo_rl.data.loaders.store import read_tables

    return read_tables(logs.root)


def _config(logs, rows, algorithm, hparams, tables) -> dict[str, Any]:
    meta = logs.metadata
    action = rows["action"]
    config = {
        "algorithm": algorithm,
        "hparams": dict(hparams),
        "logs": str(Path(logs.root).resolve()),
        "obs_dim": int(rows["observation"].shape[-1]),
        "observation_layout": meta.get("observation_layout", []),
        "history_length": int(rows["history"].shape[-1]) if "history" in rows.keys() else 0,
        "max_steps": meta.get("max_steps", 1),
    }
    if action.dtype == torch.int64 and action.dim() == 1:
        num_items = meta.get("num_items") or int(action.max()) + 1
        config.update(action="item", num_items=int(num_items))
    else:
        config.update(action="embedding", action_dim=int(action.shape[-1]))
        if "item_embeddings" not in tables:
            raise ValueError(
                f"{logs.root}: embedding actions but no {TABLES_FILE} item table to rank "
                "items by; load the logs with item features"
            )
        config["num_items"] = int(tables["item_embeddings"].shape[0])
    config["item_ids"] = meta.get("item_ids", list(range(config["num_items"])))
    config["user_ids"] = meta.get("user_ids", [])
    return config


def _prepare(out: Path, config: dict, resume: bool) -> dict | None:
    """Creates the run folder, or checks the unfinished run there; the state to resume."""
    if (out / METRICS_FILE).is_file():
        raise ValueError(f"{out}: holds a finished run ({METRICS_FILE}); choose another --out")
    checkpoint = out / CHECKPOINT_FILE
    if checkpoint.is_file():
        if not resume:
            raise ValueError(
                f"{checkpoint}: an unfinished run is there; pass --resume to continue it or "
                "choose another --out"
            )
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
        if state.get("config") != json.loads(json.dumps(config)):
            raise ValueError(
                f"{checkpoint}: made with other settings than these; choose another --out"
            )
        return state
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: not empty and holds no unfinished run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / CONFIG_FILE, config)
    return None


class _Tracker:
    """Per evaluation point: log it, keep the best policy, decide to stop; checkpoints."""

    def __init__(self, out, config, logger_type, patience, progress, state) -> None:
        from tqdm.auto import tqdm

        self.out, self.config, self.patience = out, config, patience
        self.best = None if state is None else state["best"]
        self.since_best = 0 if state is None else state["since_best"]
        self.logger = _make_logger(logger_type, out)
        done = 0 if state is None else state["training"]["step"]
        self.bar = tqdm(
            total=config["steps"],
            initial=done,
            disable=not progress,
            desc=f"train {config['algorithm']}",
            unit="step",
        )
        self.done = done
        self._policy = None

    def point(self, point: dict[str, float], metrics: dict[str, float]) -> bool:
        step = int(point["step"])
        self.bar.update(step - self.done)
        self.done = step
        if self.logger is not None:
            for name, value in point.items():
                if name != "step" and math.isfinite(value):
                    self.logger.log_scalar(name, value, step=step)
        score = metrics.get("validation_hit_rate")
        better = self.best is None or score is None or score > self.best["validation_hit_rate"]
        if better:
            self.best = {"step": step, "validation_hit_rate": score}
            self.since_best = 0
            self._save_policy()
        else:
            self.since_best += 1
        self.bar.set_postfix(val_hit=score, best=self.best["validation_hit_rate"])
        return self.patience is not None and score is not None and self.since_best >= self.patience

    def bind(self, policy) -> None:
        self._policy = policy

    def _save_policy(self) -> None:
        weights = {name: t.detach().cpu() for name, t in self._policy.state_dict().items()}
        write_atomic(self.out / POLICY_FILE, lambda tmp: torch.save(weights, tmp))

    def checkpoint(self, training: dict[str, Any]) -> None:
        payload = {
            "config": json.loads(json.dumps(self.config)),
            "training": training,
            "best": self.best,
            "since_best": self.since_best,
        }
        write_atomic(self.out / CHECKPOINT_FILE, lambda tmp: torch.save(payload, tmp))

    def best_policy(self, specs):
        from drpo_rl.checkpoints import load_policy

        return load_policy(
            self.config["algorithm"], specs, self.out / POLICY_FILE, self.config["hparams"]
        )

    def close(self) -> None:
        self.bar.close()


def _make_logger(logger_type: str, out: Path):
    if logger_type == "none":
        return None
    from torchrl.record.loggers import get_logger

    return get_logger(logger_type, logger_name=str(out), experiment_name="logs")


def _write_json(path: Path, document: Any) -> None:
    text = json.dumps(document, indent=2, allow_nan=False)
    write_atomic(path, lambda tmp: tmp.write_text(text))

"""One run of the benchmark grid: a learner or a reference row, trained and evaluated online.

:func:`execute_run` does the run ``key`` of a config and saves its record (and a learner's
policy weights) in the output folder; it gives the same numbers in any process, as long as
every process uses the same number of torch threads. The environments come built
(:class:`RunEnvs`: one user for the policy's specs and the reference policies, one
evaluation env per user count); the grid builds them once per process and every run
reuses them. Each evaluation re-seeds its env, so that it scores a policy on the same
simulated users whichever runs used the env before.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from drpo_rl.benchmark.monitoring import monitor_for
from drpo_rl.benchmark.presets import BenchmarkConfig
from drpo_rl.benchmark.references import (
    ORACLE,
    PLANNER,
    UNTRAINED,
    behaviour_policy,
    expert_rows,
    trained_algorithm,
)
from drpo_rl.benchmark.store import BenchmarkFolderError, ResultStore, RunKey
from drpo_rl.benchmark.training import train
from drpo_rl.evaluation import PatiencePlanner, evaluate, evaluation_env, oracle_policy

# Evaluation users are drawn from a seed far from the logs' seed, so that the simulated
# users a policy is scored on are not the users whose interactions it learnt from.
EVAL_SEED_OFFSET = 1_000_003


def open_logs(config: BenchmarkConfig, store: ResultStore, scenario: str, seed: int, *, progress):
    """The logs of ``scenario`` and ``seed``: generated once, then re-opened from the folder."""
    from drpo_rl.data import generate_logs

    return generate_logs(
        config.env_spec,
        scenario,
        config.log_samples,
        path=store.logs_path(scenario, seed),
        seed=seed,
        device=config.device,
        progress=progress,
    )


def checkpoint_settings(config: BenchmarkConfig, key: RunKey) -> dict[str, Any]:
    """What a run's checkpoint must have been made with to be continued.

    Example:
        >>> from drpo_rl.benchmark.presets import PRESETS
        >>> settings = checkpoint_settings(PRESETS["tiny"], RunKey("medium", "drpo", 0))
        >>> settings["run"], settings["steps"]
        ('medium/drpo/seed-0', 20)
    """
    return {"run": str(key), **config.run_settings()}


class RunEnvs:
    """The environments of a config's runs, each built on first use and then reused.

    ``specs_env`` has one user (the policy's specs, the oracle, the behaviour policy);
    :meth:`evaluation` is the env :func:`~drpo_rl.evaluation.evaluate` would build for
    that many users (:func:`~drpo_rl.evaluation.evaluation_env`), so that the numbers are
    the same.

    Example:
        >>> from drpo_rl.benchmark.presets import PRESETS
        >>> envs = RunEnvs(PRESETS["tiny"])
        >>> envs.evaluation(200) is envs.evaluation(200), envs.evaluation(200).batch_size
        (True, torch.Size([200]))
    """

    def __init__(self, config: BenchmarkConfig) -> None:
        self.spec = config.env_spec
        self.device = torch.device(config.device)
        self.specs_env = self.spec.make(device=self.device)
        self._evaluation: dict[int, Any] = {}
        self._stacked: dict[tuple[int, int], Any] = {}

    def evaluation(self, num_users: int):
        if num_users not in self._evaluation:
            self._evaluation[num_users] = evaluation_env(self.spec, num_users, device=self.device)
        return self._evaluation[num_users]

    def evaluations(self, num_users: int, count: int):
        """``count`` envs like :meth:`evaluation`'s as one
        :class:`~drpo_rl.evaluation.online.EnvStack`, for a batched evaluation of
        ``count`` runs (:func:`~drpo_rl.evaluation.online.evaluate_stacked`)."""
        from drpo_rl.evaluation.online import EnvStack

        if (num_users, count) not in self._stacked:
            envs = [evaluation_env(self.spec, num_users, device=self.device) for _ in range(count)]
            self._stacked[num_users, count] = EnvStack(envs)
        return self._stacked[num_users, count]


def execute_run(config: BenchmarkConfig, out_dir: Path, key: RunKey, envs: RunEnvs) -> None:
    """Do one run of the grid with ``config``'s ``envs`` and save its record."""
    from drpo_rl.data import OfflineLogs
    from drpo_rl.data.sessions import check_sessions
    from drpo_rl.models import PolicySpecs

    store = ResultStore(out_dir)
    # The grid generated (or checked) these logs before any run started.
    rows = OfflineLogs(store.logs_path(key.scenario, key.seed))[:]
    if config.sessions:
        check_sessions(rows, max_length=config.env_spec.config.max_length)
    _run_one(key, config, rows, PolicySpecs.from_env(envs.specs_env), envs, store)


def _record(key: RunKey, kind: str, config: BenchmarkConfig, **fields: Any) -> dict[str, Any]:
    return {
        "scenario": key.scenario,
        "algorithm": key.algorithm,
        "seed": key.seed,
        "kind": kind,
        "preset": config.preset,
        **fields,
    }


def _evaluator(key: RunKey, config: BenchmarkConfig, envs: RunEnvs):
    """``evaluate_policy(policy, final)`` of the run ``key``: its users, final or curve size."""
    eval_seed = EVAL_SEED_OFFSET + key.seed

    def evaluate_policy(policy, final: bool) -> dict[str, float]:
        num_users = config.eval_users if final else config.curve_users
        return evaluate(
            policy,
            envs.evaluation(num_users),
            num_users=num_users,
            device=envs.device,
            seed=eval_seed,
        )

    return evaluate_policy


def train_arguments(
    key: RunKey,
    config: BenchmarkConfig,
    rows: TensorDictBase,
    specs: Any,
    envs: RunEnvs,
    store: ResultStore,
) -> tuple[dict[str, Any], str]:
    """The :func:`~drpo_rl.benchmark.training.train` arguments of the trained run ``key``
    (its checkpoint, if any, loaded as ``resume``), and its record kind."""
    settings = checkpoint_settings(config, key)
    if trained_algorithm(key.algorithm) != key.algorithm:  # bc-expert
        train_rows, kind = expert_rows(rows), "reference"
    else:
        train_rows, kind = rows, "learner"
    arguments = {
        "algorithm": trained_algorithm(key.algorithm),
        "rows": train_rows,
        "specs": specs,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": key.seed,
        "device": envs.device,
        "hparams": config.algorithm_hparams(key.algorithm),
        "curve_points": config.curve_points,
        "evaluate_policy": _evaluator(key, config, envs),
        "monitor": monitor_for(key.algorithm) if kind == "learner" else None,
        "on_checkpoint": lambda state: store.save_checkpoint(key, state, settings),
        "resume": store.load_checkpoint(key, settings),
    }
    return arguments, kind


def save_result(
    key: RunKey, kind: str, config: BenchmarkConfig, store: ResultStore, result: dict[str, Any]
) -> None:
    """Save a trained run's record (and its policy's weights) from ``train``'s result."""
    result = dict(result)
    policy = result.pop("policy")
    store.save_policy(key, policy.state_dict())
    store.save(key, _record(key, kind, config, **result))


def _run_one(
    key: RunKey,
    config: BenchmarkConfig,
    rows: TensorDictBase,
    specs: Any,
    envs: RunEnvs,
    store: ResultStore,
) -> None:
    if key.algorithm in UNTRAINED:
        evaluate_policy = _evaluator(key, config, envs)
        started = time.perf_counter()
        if key.algorithm == ORACLE:
            policy = oracle_policy(envs.specs_env)
        elif key.algorithm == PLANNER:
            policy = PatiencePlanner(envs.specs_env)
        else:
            policy = behaviour_policy(envs.specs_env, key.scenario, key.seed)
        metrics = evaluate_policy(policy, True)
        record = _record(
            key, "reference", config, metrics=metrics, eval_seconds=time.perf_counter() - started
        )
        store.save(key, record)
        return
    arguments, kind = train_arguments(key, config, rows, specs, envs, store)
    try:
        result = train(**arguments)
    except ValueError as error:
        # training.restore_state's refusal of a state that does not fit this run names no file.
        if arguments["resume"] is None or not str(error).startswith("training state"):
            raise
        raise BenchmarkFolderError(
            f"{store.checkpoint_path(key)}: {error}; delete it to start the run again"
        ) from error
    save_result(key, kind, config, store, result)

"""Many benchmark runs of one algorithm trained as one batched model.

:func:`execute_stack` is :func:`~drpo_rl.benchmark.run.execute_run` for several runs of
the grid (one algorithm, any scenarios and seeds): it saves each run's record, policy and
checkpoints as the run alone would.

:func:`train_stacked` is :func:`~drpo_rl.benchmark.training.train` for several runs at
once: each run is prepared exactly as alone (its seed, its initialisation, its replay
buffer and sampling generator, its resumed state), then their updates go through one
:class:`~drpo_rl.algorithms.stacked.StackedAlgorithm` (one ``vmap``-ed forward and
backward, one Adam over the stacked parameters), each step sampling every run's batch
from its own buffer. At each learning-curve point the stack is written back into the
runs' own algorithms, and each run's :class:`~drpo_rl.benchmark.training.RunProgress`
records its point, evaluates it and hands out its checkpoint, in the single-run format: a
stacked run resumes from its checkpoints whether stacked again or alone, and ends with the
numbers of the run trained alone, to float rounding. On the devices of
:data:`BATCHED_EVALUATION` the runs are evaluated together, in one rollout of a
``SerialEnv`` of their evaluation envs (each seeded as the run alone seeds it) with the
stack's batched policy (:func:`~drpo_rl.evaluation.online.evaluate_stacked`), with the
same numbers; elsewhere each run is evaluated alone.

:func:`stack_check` tells, before any run is scheduled, whether an algorithm's runs can be
stacked (one forward of two freshly built runs on a few logged rows); the grid trains
those that cannot run by run, with a one-line note.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from drpo_rl.algorithms.stacked import NotStackableError, StackedAlgorithm
from drpo_rl.benchmark.presets import BenchmarkConfig
from drpo_rl.benchmark.run import (
    EVAL_SEED_OFFSET,
    RunEnvs,
    execute_run,
    save_result,
    train_arguments,
)
from drpo_rl.benchmark.store import ResultStore, RunKey
from drpo_rl.benchmark.training import RunProgress, learner_view, prepare
from drpo_rl.evaluation.online import evaluate_stacked

__all__ = [
    "BATCHED_EVALUATION",
    "SHARED_ARGUMENTS",
    "execute_stack",
    "stack_check",
    "train_stacked",
]

#: Device types on which the grid evaluates a stack's runs in one batched rollout. Not the
#: CPU: there the default benchmark's 60 learner runs took 5.5-5.8 s of evaluation batched
#: (TorchRL's ``SerialEnv`` copies every step's outputs) against 3.1-3.4 s run by run.
BATCHED_EVALUATION = ("cuda",)

#: The :func:`~drpo_rl.benchmark.training.train` arguments the runs of one stack share;
#: the others (seed, rows, lr, hparams of the same shapes, callbacks) may differ per run.
SHARED_ARGUMENTS = ("algorithm", "steps", "batch_size", "device", "curve_points")


def train_stacked(
    runs: Sequence[Mapping[str, Any]],
    *,
    compile: bool = False,
    evaluate_runs: Callable[[Any, bool], list[dict[str, float]]] | None = None,
) -> list[dict[str, Any]]:
    """``[train(**run) for run in runs]``, trained as one batched model.

    Each ``run`` holds :func:`~drpo_rl.benchmark.training.train`'s arguments; the
    :data:`SHARED_ARGUMENTS` must be equal. ``compile`` compiles the batched forward.
    ``evaluate_runs(policy, final)`` (optional) evaluates every run at once with the
    stack's batched policy (:meth:`~drpo_rl.algorithms.stacked.StackedAlgorithm.policy`),
    giving each run's metrics, those of its ``evaluate_policy``; without it, each run's
    ``evaluate_policy`` is called. A run's ``train_seconds`` (and, evaluated at once,
    ``eval_seconds``) is its share of the stack's.

    Raises :class:`~drpo_rl.algorithms.stacked.NotStackableError` (different shared
    arguments or shapes, runs resuming from different steps, a loss that cannot run under
    ``vmap``) before any callback is called, so that the caller may train them one by one.
    """
    if not runs:
        return []
    for name in SHARED_ARGUMENTS:
        values = {repr(run[name]) for run in runs}
        if len(values) > 1:
            raise NotStackableError(f"the runs have different {name}: {sorted(values)}")
    progress: list[RunProgress] = []
    buffers = []
    for run in runs:
        algo, generator, buffer = prepare(
            run["algorithm"],
            run["rows"],
            run["specs"],
            batch_size=run["batch_size"],
            lr=run["lr"],
            seed=run["seed"],
            device=run["device"],
            hparams=run["hparams"],
        )
        buffers.append(buffer)
        progress.append(
            RunProgress(
                algo,
                generator,
                run["device"],
                steps=run["steps"],
                curve_points=run["curve_points"],
                evaluate_policy=run["evaluate_policy"],
                monitor=run.get("monitor"),
                on_checkpoint=run.get("on_checkpoint"),
                resume=run.get("resume"),
            )
        )
    done = {p.done for p in progress}
    if len(done) > 1:
        raise NotStackableError(f"the runs resume from different steps {sorted(done)}")
    done = done.pop()
    stack = StackedAlgorithm([p.algo for p in progress], compile=compile)
    start = time.perf_counter()
    for checkpoint in progress[0].checkpoints:
        if checkpoint <= done:
            continue
        for _ in range(checkpoint - done):
            batch = torch.stack([buffer.sample() for buffer in buffers])
            terms = stack.update(batch)
        done = checkpoint
        stack.write_back()
        share = (time.perf_counter() - start) / len(runs)
        evaluated: list[tuple[dict[str, float], float] | None] = [None] * len(runs)
        if evaluate_runs is not None:
            start = time.perf_counter()
            metrics = evaluate_runs(stack.policy(), checkpoint == progress[0].steps)
            seconds = (time.perf_counter() - start) / len(runs)
            evaluated = [(run_metrics, seconds) for run_metrics in metrics]
        for index, run in enumerate(progress):
            run_terms = {name: value[index] for name, value in terms.items()}
            run.reach(checkpoint, run_terms, batch[index], share, evaluated[index])
        start = time.perf_counter()
    return [p.result(int(run["rows"].numel())) for p, run in zip(progress, runs, strict=True)]


def stack_check(
    algorithm: str, specs: Any, rows: TensorDictBase, *, hparams: Mapping[str, Any]
) -> str | None:
    """Why runs of ``algorithm`` cannot be stacked (one line), or ``None`` when they can.

    Builds two runs with ``hparams`` for ``specs`` and runs one batched forward on a few
    of the logged ``rows``; the global random state is left as it was.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.models import PolicySpecs
        >>> rows = TensorDict({
        ...     "observation": torch.randn(8, 4), "action": torch.randn(8, 2),
        ...     ("next", "reward"): torch.rand(8, 1)}, [8])
        >>> specs = PolicySpecs(obs_dim=4, action_dim=2)
        >>> stack_check("drpo", specs, rows, hparams={"num_cells": 8}) is None
        True
    """
    from drpo_rl.algorithms import build

    batch = learner_view(rows[:8])
    with torch.random.fork_rng(devices=[]):
        algos = [build(algorithm, specs, **hparams) for _ in range(2)]
        try:
            StackedAlgorithm(algos).check(torch.stack([batch, batch]))
        except NotStackableError as error:
            return str(error)
    return None


def execute_stack(
    config: BenchmarkConfig,
    out_dir: Path,
    keys: Sequence[RunKey],
    envs: RunEnvs,
    *,
    compile: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Do the trained runs ``keys`` of the grid as one stack and save their records.

    Runs that turn out not to stack (e.g. their checkpoints are at different steps) are
    done one by one, with a one-line note through ``echo``; a stack too large for the
    memory is split in halves, saying so.
    """
    from drpo_rl.data import OfflineLogs
    from drpo_rl.models import PolicySpecs

    store = ResultStore(out_dir)
    specs = PolicySpecs.from_env(envs.specs_env)
    prepared = []
    for key in keys:
        rows = OfflineLogs(store.logs_path(key.scenario, key.seed))[:]
        prepared.append(train_arguments(key, config, rows, specs, envs, store))

    def evaluate_runs(policy, final: bool) -> list[dict[str, float]]:
        num_users = config.eval_users if final else config.curve_users
        return evaluate_stacked(
            policy,
            envs.evaluations(num_users, len(keys)),
            num_users=num_users,
            device=envs.device,
            seeds=[EVAL_SEED_OFFSET + key.seed for key in keys],
        )

    try:
        results = train_stacked(
            [arguments for arguments, _ in prepared],
            compile=compile,
            evaluate_runs=evaluate_runs if envs.device.type in BATCHED_EVALUATION else None,
        )
    except NotStackableError as error:
        echo(f"{_names(keys)}: trained run by run ({error})")
        results = None
    except (torch.OutOfMemoryError, MemoryError):
        if len(keys) == 1:
            raise
        half = len(keys) // 2
        echo(
            f"{_names(keys)}: out of memory for a stack of {len(keys)} runs; "
            f"stacking {half} and {len(keys) - half}"
        )
        for part in (keys[:half], keys[half:]):
            execute_stack(config, out_dir, part, envs, compile=compile, echo=echo)
        return
    except ValueError as error:
        # A checkpoint that does not fit: the run alone names its file.
        if not str(error).startswith("training state"):
            raise
        results = None
    if results is None:
        for key in keys:
            execute_run(config, out_dir, key, envs)
        return
    for key, (_, kind), result in zip(keys, prepared, results, strict=True):
        save_result(key, kind, config, store, result)


def _names(keys: Sequence[RunKey]) -> str:
    return ", ".join(dict.fromkeys(key.algorithm for key in keys))

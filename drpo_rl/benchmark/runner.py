"""Run a benchmark grid: logs per scenario and seed, then every learner and reference row.

:func:`run_benchmark` is the whole pipeline behind ``drpo-rl bench``. It validates every
name first, generates (or re-opens, from the output folder) the logs of each scenario and
seed, then runs each learner and reference row whose result file is missing, saving each
as soon as it finishes. Re-running with the same folder therefore resumes: finished runs
are loaded and listed as skipped, and a run interrupted while training continues from its
last checkpoint (a learning-curve point), ending with the numbers an uninterrupted run
would have given.

Runs are independent (each seeds everything it draws), so they may be spread over worker
processes; a run gives the same numbers whichever process does it, as long as every
process uses the same number of torch threads (the workers and the command line use one).

A ``KeyboardInterrupt`` (Ctrl-C; ``drpo-rl bench`` turns SIGTERM into one too) stops the
benchmark cleanly: no further run starts, the worker processes are terminated and waited
for, and :class:`BenchmarkInterrupted` says how far it got. Nothing is lost by killing a
worker: finished runs are saved, and an unfinished one continues from its last checkpoint
(every file is written to a temporary name and renamed, so none is left half-written).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from tqdm.auto import tqdm

from drpo_rl.benchmark.monitoring import monitor_for
from drpo_rl.benchmark.presets import BenchmarkConfig
from drpo_rl.benchmark.references import behaviour_policy, expert_rows
from drpo_rl.benchmark.store import ResultStore, RunKey
from drpo_rl.benchmark.training import train
from drpo_rl.console import quiet_torchrl
from drpo_rl.evaluation import evaluate, oracle_policy
from drpo_rl.files import remove_temporaries

# Evaluation users are drawn from a seed far from the logs' seed, so that the simulated
# users a policy is scored on are not the users whose interactions it learnt from.
EVAL_SEED_OFFSET = 1_000_003

# How long a terminated worker may take to exit before it is killed (SIGTERM's default
# action is immediate; this only matters if something in the worker catches SIGTERM).
WORKER_EXIT_GRACE_SECONDS = 10.0


class BenchmarkInterrupted(KeyboardInterrupt):
    """A benchmark stopped by a ``KeyboardInterrupt`` after its workers were stopped.

    A ``KeyboardInterrupt`` (not an ``Exception``), so that code which catches errors does
    not swallow an interruption.

    Attributes:
        finished: runs of the grid with a saved record (``finished_earlier`` included).
        total: runs in the grid.
        finished_earlier: runs found finished when this invocation started.

    Example:
        >>> error = BenchmarkInterrupted(finished=3, total=10, finished_earlier=2)
        >>> str(error)
        'interrupted after 3 of 10 runs (2 finished earlier)'
        >>> isinstance(error, Exception)
        False
    """

    def __init__(self, finished: int, total: int, finished_earlier: int) -> None:
        super().__init__(
            f"interrupted after {finished} of {total} runs ({finished_earlier} finished earlier)"
        )
        self.finished = finished
        self.total = total
        self.finished_earlier = finished_earlier


@dataclass
class BenchmarkReport:
    """What a benchmark invocation did and found.

    Attributes:
        config: the benchmark's configuration.
        out_dir: its output folder.
        records: one record per run of the grid (finished now or earlier), grid order.
        ran: the runs done by this invocation.
        skipped: the runs found finished in the folder and not redone.
        wall_seconds: wall time of this invocation.

    Example:
        >>> import tempfile
        >>> from drpo_rl.benchmark.presets import make_config
        >>> config = make_config("tiny", algorithms=("bc",), references=())
        >>> out = Path(tempfile.mkdtemp())
        >>> report = run_benchmark(config, out, progress=False, echo=lambda *args: None)
        >>> [str(key) for key in report.ran], report.skipped
        (['medium/bc/seed-0'], [])
        >>> again = run_benchmark(config, out, progress=False, echo=lambda *args: None)
        >>> again.ran, [str(key) for key in again.skipped]
        ([], ['medium/bc/seed-0'])
    """

    config: BenchmarkConfig
    out_dir: Path
    records: list[dict[str, Any]]
    ran: list[RunKey]
    skipped: list[RunKey]
    wall_seconds: float


def plan(config: BenchmarkConfig) -> list[RunKey]:
    """The grid in execution order: per scenario and seed, references then learners.

    Example:
        >>> from drpo_rl.benchmark.presets import PRESETS
        >>> [str(k) for k in plan(PRESETS["tiny"])][:2]
        ['medium/oracle/seed-0', 'medium/behaviour/seed-0']
    """
    return [
        RunKey(scenario, name, seed)
        for scenario in config.scenarios
        for seed in config.seeds
        for name in (*config.references, *config.algorithms)
    ]


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> BenchmarkReport:
    """Run (or resume) the benchmark ``config`` in ``out_dir`` with ``workers`` processes.

    Example:
        >>> import tempfile
        >>> from drpo_rl.benchmark.presets import make_config
        >>> config = make_config("tiny", algorithms=["bc"], steps=5)
        >>> report = run_benchmark(config, tempfile.mkdtemp(), progress=False, echo=print)
        >>> [k.algorithm for k in report.ran]
        ['oracle', 'behaviour', 'bc-expert', 'bc']
        >>> again = run_benchmark(config, report.out_dir, progress=False, echo=print)
        resuming ...: skipping 4 finished run(s): medium/oracle/seed-0, ...
        >>> again.ran, again.records == report.records
        ([], True)
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    start = time.perf_counter()
    config.validate()
    store = ResultStore(out_dir)
    store.check_settings(config.run_settings())
    # Left by workers killed while writing a record or checkpoint; no one writes here yet.
    remove_temporaries(store.root)
    keys = plan(config)
    skipped = [k for k in keys if store.has(k)]
    todo = [k for k in keys if not store.has(k)]
    if skipped:
        echo(
            f"resuming {store.root}: skipping {len(skipped)} finished run(s): "
            + ", ".join(str(k) for k in skipped)
        )
    for key in skipped:
        # Left by an interruption between writing the record and deleting the checkpoint.
        store.checkpoint_path(key).unlink(missing_ok=True)
    for key in todo:
        # Read here too (not only by the worker) so that a bad checkpoint stops the
        # benchmark before any work, and the user hears which runs continue.
        state = store.load_checkpoint(key, checkpoint_settings(config, key))
        if state is not None:
            echo(f"resuming {key} from step {state['step']} of {config.steps}")

    ran: list[RunKey] = []
    try:
        for scenario, seed in dict.fromkeys((k.scenario, k.seed) for k in todo):
            open_logs(config, store, scenario, seed, progress=progress)
        with tqdm(
            total=len(todo), desc="bench", unit="run", disable=not progress or not todo
        ) as bar:

            def finished(key: RunKey) -> None:
                ran.append(key)
                bar.set_postfix_str(str(key))
                bar.update()

            if workers == 1 or len(todo) <= 1:
                for key in todo:
                    execute_run(config, store.root, key)
                    finished(key)
            else:
                _run_in_workers(config, store.root, todo, workers, finished)
    except KeyboardInterrupt as interrupt:
        raise BenchmarkInterrupted(
            finished=sum(store.has(k) for k in keys),
            total=len(keys),
            finished_earlier=len(skipped),
        ) from interrupt
    ran.sort(key=keys.index)
    records = [store.load(k) for k in keys]
    return BenchmarkReport(
        config=config,
        out_dir=store.root,
        records=records,
        ran=ran,
        skipped=skipped,
        wall_seconds=time.perf_counter() - start,
    )


def _run_in_workers(
    config: BenchmarkConfig,
    out_dir: Path,
    todo: list[RunKey],
    workers: int,
    finished: Callable[[RunKey], None],
) -> None:
    """Do the runs ``todo`` in ``workers`` spawned processes; stop them all on any error.

    A ProcessPoolExecutor rather than a multiprocessing Pool because it fails (with
    BrokenProcessPool) when a worker dies, where a Pool waits forever for the lost result.
    But neither its ``shutdown(cancel_futures=True)`` nor its context manager stops the
    runs already in the workers (Python 3.14's ``terminate_workers`` would), so on an
    interruption or an error the workers are terminated here, through the executor's
    process handles. The executor sees them die, fails the remaining futures and cleans
    up its queues, which ``shutdown`` then waits for: no process or semaphore is left
    behind. An error in one run thus stops the others at once (they resume later) rather
    than after every queued run.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    futures: dict[Future, RunKey] = {}
    try:
        # The executor spawns its workers in submit(), so they are all started here.
        with _signals_deferred(ignored_by_children=True):
            futures = {pool.submit(execute_run, config, out_dir, key): key for key in todo}
        for future in as_completed(futures):
            future.result()
            finished(futures[future])
    except BaseException:
        # A second Ctrl-C must not break off the clean-up and leave workers running:
        # signals arriving meanwhile are held until it is done.
        with _signals_deferred(ignored_by_children=False):
            # No future.cancel() here: the executor fails the pending futures itself once
            # it sees its workers die (a cancelled one makes it stop half-way, in 3.11).
            # _processes is private, but the only way to the workers before Python 3.14.
            _stop_workers(list(pool._processes.values()))
            pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)


def _stop_workers(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(WORKER_EXIT_GRACE_SECONDS)
        if process.exitcode is None:
            process.kill()
            process.join()


@contextlib.contextmanager
def _signals_deferred(*, ignored_by_children: bool) -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends; optionally start children ignoring SIGINT.

    Workers ignore SIGINT because the parent decides what an interruption does: Ctrl-C in
    a terminal signals the whole process group, and each worker would otherwise print a
    traceback. Setting SIGINT to ignored while spawning makes the workers inherit that
    from birth (an ignored signal survives exec), so even a Ctrl-C while they import
    torch is silent. In this process the signal is blocked, not lost: Linux keeps a
    blocked signal pending even while it is ignored, and delivers it to the restored
    handler when the block ends. Children inherit the blocked mask too: the workers'
    initializer unblocks both signals, and a SIGTERM sent before that waits for it.
    """
    held = {signal.SIGINT, signal.SIGTERM}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        # signal.signal works in the main thread only; elsewhere children keep SIGINT.
        if ignored_by_children and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)
        else:
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _init_worker() -> None:
    # Spawned inside _signals_deferred: SIGINT stays ignored, SIGTERM must end the worker.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # Same thread count as the command line (see the module docstring).
    torch.set_num_threads(1)
    quiet_torchrl()
    # A spawned worker inherits "spawn" as its default start method, under which every
    # multiprocessing lock (torchrl's storages and writers make a few per run, tqdm one)
    # is registered with the resource tracker until it is freed; a worker terminated on
    # an interruption then makes the tracker warn of "leaked semaphore objects". Runs
    # start no processes, so "fork" costs nothing here, and its locks are unlinked at once.
    multiprocessing.set_start_method("fork", force=True)


def open_logs(
    config: BenchmarkConfig, store: ResultStore, scenario: str, seed: int, *, progress: bool
):
    """The logs of ``scenario`` and ``seed``: generated once, then re-opened from the folder."""
    from drpo_rl.data import generate_logs

    return generate_logs(
        config.env,
        scenario,
        config.log_samples,
        path=store.logs_path(scenario, seed),
        seed=seed,
        device=config.device,
        progress=progress,
        **config.env_overrides,
    )


def execute_run(config: BenchmarkConfig, out_dir: Path, key: RunKey) -> None:
    """Do one run of the grid and save its record (in this process or a worker)."""
    from drpo_rl.models import PolicySpecs
    from envs import make_env

    store = ResultStore(out_dir)
    rows = open_logs(config, store, key.scenario, key.seed, progress=False)[:]
    env = make_env(config.env, device=config.device, **config.env_overrides)
    record = _run_one(key, config, rows, PolicySpecs.from_env(env), env, store)
    policy = record.pop("policy", None)
    if policy is not None:
        store.save_policy(key, policy.state_dict())
    store.save(key, record)


def checkpoint_settings(config: BenchmarkConfig, key: RunKey) -> dict[str, Any]:
    """What a run's checkpoint must have been made with to be continued.

    Example:
        >>> from drpo_rl.benchmark.presets import PRESETS
        >>> settings = checkpoint_settings(PRESETS["tiny"], RunKey("medium", "drpo", 0))
        >>> settings["run"], settings["steps"]
        ('medium/drpo/seed-0', 20)
    """
    return {"run": str(key), **config.run_settings()}


def _record(key: RunKey, kind: str, config: BenchmarkConfig, **fields: Any) -> dict[str, Any]:
    return {
        "scenario": key.scenario,
        "algorithm": key.algorithm,
        "seed": key.seed,
        "kind": kind,
        "preset": config.preset,
        **fields,
    }


def _run_one(
    key: RunKey,
    config: BenchmarkConfig,
    rows: TensorDictBase,
    specs: Any,
    env: Any,
    store: ResultStore,
) -> dict[str, Any]:
    device = torch.device(config.device)
    eval_seed = EVAL_SEED_OFFSET + key.seed

    def evaluate_policy(policy, final: bool) -> dict[str, float]:
        return evaluate(
            policy,
            config.env,
            num_users=config.eval_users if final else config.curve_users,
            device=device,
            seed=eval_seed,
            env_kwargs=config.env_overrides,
        )

    if key.algorithm in ("oracle", "behaviour"):
        started = time.perf_counter()
        if key.algorithm == "oracle":
            policy = oracle_policy(env)
        else:
            policy = behaviour_policy(env, key.scenario, key.seed)
        metrics = evaluate_policy(policy, True)
        return _record(
            key, "reference", config, metrics=metrics, eval_seconds=time.perf_counter() - started
        )
    settings = checkpoint_settings(config, key)
    if key.algorithm == "bc-expert":
        train_rows, algorithm, kind = expert_rows(rows), "bc", "reference"
    else:
        train_rows, algorithm, kind = rows, key.algorithm, "learner"
    result = train(
        algorithm,
        train_rows,
        specs,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=key.seed,
        device=device,
        hparams=dict(config.hparams.get(key.algorithm, {})),
        curve_points=config.curve_points,
        evaluate_policy=evaluate_policy,
        monitor=monitor_for(key.algorithm) if kind == "learner" else None,
        on_checkpoint=lambda state: store.save_checkpoint(key, state, settings),
        resume=store.load_checkpoint(key, settings),
    )
    return _record(key, kind, config, **result)

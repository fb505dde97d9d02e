"""The benchmark grid: which runs, in which order, skipping the finished ones.

:func:`run_benchmark` is the whole pipeline behind ``drpo-rl bench``. It records the
config's settings in the output folder (refusing a folder made with other ones), generates
(or re-opens) the logs of each scenario and seed, then does each learner and reference row
whose result file is missing (:func:`drpo_rl.benchmark.run.execute_run`), saving each as
soon as it finishes. Re-running with the same folder therefore resumes: finished runs are
loaded and listed as skipped, and a run interrupted while training continues from its last
checkpoint (a learning-curve point), ending with the numbers an uninterrupted run would
have given.

The trained runs of one algorithm (every scenario and seed; those of a resumed benchmark
grouped by the step their checkpoints are at) are trained as one batched model
(:mod:`drpo_rl.benchmark.stacked`, at most ``max_stack`` runs a stack), with the numbers
each run gives alone, to float rounding; :func:`schedule` makes these groups, and an
algorithm whose losses cannot be stacked is trained run by run, with a one-line note.

Runs are independent (each seeds everything it draws), so they (and the stacks) may be
spread over worker processes (:mod:`drpo_rl.benchmark.pool`); a run gives the same numbers
whichever process does it, as long as every process uses the same number of torch threads
(the workers and the command line use one).

A ``KeyboardInterrupt`` (Ctrl-C; ``drpo-rl bench`` turns SIGTERM into one too) stops the
benchmark cleanly: no further run starts, the worker processes are terminated and waited
for, and :class:`BenchmarkInterrupted` says how far it got. Nothing is lost by killing a
worker: finished runs are saved, and an unfinished one continues from its last checkpoint
(every file is written to a temporary name and renamed, so none is left half-written).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from drpo_rl.benchmark.pool import BACKENDS, run_in_workers, run_on_ray
from drpo_rl.benchmark.presets import BenchmarkConfig
from drpo_rl.benchmark.references import UNTRAINED, trained_algorithm
from drpo_rl.benchmark.run import RunEnvs, checkpoint_settings, execute_run, open_logs
from drpo_rl.benchmark.stacked import execute_stack, stack_check
from drpo_rl.benchmark.store import LOCK_FILE, ResultStore, RunKey
from drpo_rl.console import quiet_torchrl
from envs.common.checks import check_choice
from envs.common.files import remove_temporaries
from envs.common.locks import exclusive_lock


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


#: The most runs trained as one batched model by default (see :func:`schedule`).
DEFAULT_MAX_STACK = 64


def schedule(
    config: BenchmarkConfig,
    todo: list[RunKey],
    store: ResultStore,
    resumed: dict[RunKey, int],
    *,
    max_stack: int = DEFAULT_MAX_STACK,
    echo: Callable[[str], None] = print,
) -> list[tuple[RunKey, ...]]:
    """The runs ``todo`` as units of work: stacks of trained runs, then single runs.

    The trained runs of one algorithm that resume from the same step (``resumed``: a run's
    checkpoint step; 0 for a fresh run) form a group, cut into stacks of at most
    ``max_stack``; an algorithm whose losses cannot be stacked
    (:func:`~drpo_rl.benchmark.stacked.stack_check` on the first logs) keeps its runs
    single, saying why through ``echo``. Reference rows without training are single runs.
    Largest units first, so that worker processes finish together.

    Example:
        >>> from drpo_rl.benchmark.presets import PRESETS
        >>> todo = plan(PRESETS["tiny"])
        >>> [len(unit) for unit in schedule(PRESETS["tiny"], todo, None, {}, max_stack=1)]
        [1, 1, 1, 1, 1]
    """
    groups: dict[tuple[str, int], list[RunKey]] = {}
    for key in todo:
        if key.algorithm not in UNTRAINED and max_stack > 1:
            groups.setdefault((key.algorithm, resumed.get(key, 0)), []).append(key)
    stacked = {key for keys in groups.values() if len(keys) > 1 for key in keys}
    problems: dict[str, str | None] = {}
    units: list[tuple[RunKey, ...]] = []
    for (algorithm, _), keys in groups.items():
        if len(keys) == 1:
            continue
        if algorithm not in problems:
            problems[algorithm] = _stack_problem(config, store, keys[0])
            if problems[algorithm] is not None:
                echo(f"{algorithm}: trained run by run ({problems[algorithm]})")
        if problems[algorithm] is not None:
            stacked -= set(keys)
            continue
        units.extend(tuple(keys[i : i + max_stack]) for i in range(0, len(keys), max_stack))
    units.extend((key,) for key in todo if key not in stacked)
    return sorted(units, key=len, reverse=True)


def _stack_problem(config: BenchmarkConfig, store: ResultStore, key: RunKey) -> str | None:
    from drpo_rl.data import OfflineLogs
    from drpo_rl.models import PolicySpecs

    specs = PolicySpecs.from_env(config.env_spec.make(device="cpu"))
    rows = OfflineLogs(store.logs_path(key.scenario, key.seed))[:8].to("cpu")
    algorithm = trained_algorithm(key.algorithm)
    hparams = dict(config.hparams.get(key.algorithm, {}))
    return stack_check(algorithm, specs, rows, hparams=hparams)


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    wait: bool = False,
    backend: str = "processes",
    address: str | None = None,
    max_stack: int = DEFAULT_MAX_STACK,
    compile: bool = False,
) -> BenchmarkReport:
    """Run (or resume) the benchmark ``config`` in ``out_dir`` with ``workers`` processes.

    ``backend="ray"`` does each unit of work as a Ray task instead (local Ray, or the
    cluster at ``address``; ``workers`` is then Ray's business) with the same records.
    At most ``max_stack`` runs train as one batched model (1: every run alone, the
    single-run path); ``compile`` compiles the stacks' batched forward (``torch.compile``).

    Only one benchmark writes a folder at a time: while another holds ``out_dir``'s lock,
    this raises :class:`~envs.common.locks.FolderBusyError` naming it, or, with ``wait``,
    says so through ``echo`` and waits for it.

    ``config`` comes from :func:`~drpo_rl.benchmark.presets.make_config`, which checked it.

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
    check_choice("backend", backend, BACKENDS)
    if not isinstance(max_stack, int) or isinstance(max_stack, bool) or max_stack < 1:
        raise ValueError(f"max_stack: expected a positive integer, got {max_stack!r}")
    out_dir = Path(out_dir)
    with exclusive_lock(
        out_dir / LOCK_FILE,
        what=f"output folder {out_dir}",
        wait=wait,
        on_wait=lambda holder: echo(f"waiting for {holder} to finish with {out_dir}"),
        hint="wait for it to finish (--wait) or use another --out folder",
    ):
        return _run_benchmark(
            config,
            out_dir,
            workers=workers,
            progress=progress,
            echo=echo,
            backend=backend,
            address=address,
            max_stack=max_stack,
            compile=compile,
        )


def _run_benchmark(
    config: BenchmarkConfig,
    out_dir: Path,
    *,
    workers: int,
    progress: bool,
    echo: Callable[[str], None],
    backend: str,
    address: str | None,
    max_stack: int,
    compile: bool,
) -> BenchmarkReport:
    start = time.perf_counter()
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
        # A record that is not this cell's (copied from elsewhere) stops the benchmark now,
        # not after every other run.
        store.load(key)
        # Left by an interruption between writing the record and deleting the checkpoint.
        store.checkpoint_path(key).unlink(missing_ok=True)
    resumed: dict[RunKey, int] = {}
    for key in todo:
        # Read here too (not only by the run) so that a bad checkpoint stops the
        # benchmark before any work, and the user hears which runs continue.
        state = store.load_checkpoint(key, checkpoint_settings(config, key))
        if state is not None:
            echo(f"resuming {key} from step {state['step']} of {config.steps}")
            resumed[key] = state["step"]

    ran: list[RunKey] = []
    try:
        for scenario, seed in dict.fromkeys((k.scenario, k.seed) for k in todo):
            open_logs(config, store, scenario, seed, progress=progress)
        units = schedule(config, todo, store, resumed, max_stack=max_stack, echo=echo)
        with tqdm(
            total=len(todo), desc="bench", unit="run", disable=not progress or not todo
        ) as bar:

            def finished(unit: tuple[RunKey, ...]) -> None:
                ran.extend(unit)
                bar.set_postfix_str(", ".join(str(key) for key in unit))
                bar.update(len(unit))

            if backend == "ray":
                task = functools.partial(_execute_in_worker, config, store.root, compile)
                run_on_ray(task, units, finished, address=address, initializer=_init_worker)
            elif workers == 1 or len(units) <= 1:
                envs = RunEnvs(config)
                for unit in units:
                    _execute_unit(config, store.root, unit, envs, compile, echo)
                    finished(unit)
            else:
                task = functools.partial(_execute_in_worker, config, store.root, compile)
                run_in_workers(task, units, workers, finished, initializer=_init_worker)
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


# A worker's environments: built by its first run, reused by the next (a worker serves
# the runs of one config).
_worker_envs: RunEnvs | None = None


def _execute_in_worker(
    config: BenchmarkConfig, out_dir: Path, compile: bool, unit: tuple[RunKey, ...]
) -> None:
    global _worker_envs
    if _worker_envs is None:
        _worker_envs = RunEnvs(config)
    _execute_unit(config, out_dir, unit, _worker_envs, compile, print)


def _execute_unit(
    config: BenchmarkConfig,
    out_dir: Path,
    unit: tuple[RunKey, ...],
    envs: RunEnvs,
    compile: bool,
    echo: Callable[[str], None],
) -> None:
    if len(unit) == 1:
        execute_run(config, out_dir, unit[0], envs)
    else:
        execute_stack(config, out_dir, unit, envs, compile=compile, echo=echo)


def _init_worker() -> None:
    # Same thread count as the command line (see the module docstring).
    torch.set_num_threads(1)
    quiet_torchrl()

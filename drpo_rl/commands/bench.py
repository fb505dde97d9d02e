"""``drpo-rl bench``: the benchmark from the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_bench_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["bench", "--preset", "tiny", "--seeds", "2"])
    >>> args.preset, args.seeds, args.env
    ('tiny', '2', 'RecSimBandit')
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from drpo_rl.benchmark.presets import PRESETS, SWEEPS, make_config, parse_seeds
from drpo_rl.commands.options import (
    add_device,
    add_env_options,
    add_hparams,
    add_no_progress,
    env_spec,
)
from drpo_rl.evaluation.off_policy.names import BENCH_ESTIMATOR


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_bench_command(subparsers) -> None:
    """Register ``bench`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "bench",
        help="train DRPO and the baselines on mixed-quality logs and evaluate them online",
        description=(
            "Scenarios x algorithms x seeds: generate logs (cached in the output folder), "
            "train each algorithm, evaluate it against simulated users, and write a table, "
            "CSV/JSON of every run and PNG plots. Re-running with the same --out resumes."
        ),
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="default: 'sessions' with --env UserSession, else 'default'",
    )
    parser.add_argument(
        "--sweep",
        choices=sorted(SWEEPS),
        help="run a sweep's scenarios instead (noise: noise-0 ... noise-80)",
    )
    parser.add_argument("--scenarios", help="comma-separated, e.g. medium,extreme,noise-40")
    parser.add_argument("--algorithms", help="comma-separated registry names, e.g. drpo,bc,apg")
    parser.add_argument(
        "--references",
        help="comma-separated reference rows among oracle,behaviour,bc-expert ('' for none)",
    )
    parser.add_argument(
        "--seeds", help='a count (3 -> seeds 0,1,2) or a list (0,4,7; a single seed 7 is "7,")'
    )
    parser.add_argument("--steps", type=int, help="gradient steps per run")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--log-samples", type=int, help="logged rows per scenario and seed")
    parser.add_argument("--eval-users", type=int, help="simulated users of the final evaluation")
    add_env_options(parser, env_help="; the logs and the evaluation share it")
    add_device(parser, default=None)
    add_hparams(parser)
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: bench-results/<preset> or bench-results/<sweep>)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes for the runs (default: 2 on CPU when 2+ cores; on CUDA one "
        "per core but one, at most 8)",
    )
    parser.add_argument(
        "--backend",
        choices=("processes", "ray"),
        default="processes",
        help="where the runs go: this machine's worker processes (default) or Ray tasks "
        "(pip install 'drpo-rl[ray]')",
    )
    parser.add_argument(
        "--address",
        help="with --backend ray: the cluster to join ('auto', 'ray://HOST:10001'); "
        "default: a local Ray",
    )
    parser.add_argument(
        "--max-stack",
        type=int,
        help="at most this many runs of one algorithm train as one batched model "
        "(default 64; 1: every run alone)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the stacked updates (off by default: see the README's timings)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another benchmark is writing --out, wait for it to finish (default: stop, "
        "saying which process holds it)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument(
        "--ope",
        nargs="?",
        const=BENCH_ESTIMATOR,
        metavar="ESTIMATOR",
        help="also estimate each trained run off-policy from its logs, beside its online "
        f"value (default estimator: {BENCH_ESTIMATOR}); writes results_ope.csv",
    )
    add_no_progress(parser)
    parser.set_defaults(func=bench)


def default_preset(env: str) -> str:
    """The preset of ``--env`` when ``--preset`` is not given: the session benchmark for
    ``UserSession``, else the bandit one.

    Example:
        >>> default_preset("UserSession"), default_preset("RecSimBandit")
        ('sessions', 'default')
    """
    return "sessions" if env == "UserSession" else "default"


def default_workers(device: str, cpu_count: int) -> int:
    """Worker processes when ``--workers`` is not given.

    On a CPU the runs compete for the cores, so two (the default preset's measured set-up).
    On a GPU one update of these small networks is bound by kernel launches, not by the
    GPU, so several processes share one GPU well: one per core, leaving one for the main
    process, at most 8 (each holds a CUDA context of a few hundred MB).

    Example:
        >>> default_workers("cpu", 16), default_workers("cuda", 16), default_workers("cuda:0", 2)
        (2, 8, 1)
    """
    if device.split(":")[0] == "cuda":
        return max(1, min(8, cpu_count - 1))
    return min(2, cpu_count)


def bench(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed ``args`` describe; prints the table, returns 0.

    SIGINT or SIGTERM stops it cleanly (workers terminated, no traceback): it prints how
    far it got and returns 128 + the signal's number (130, 143), as a shell reports a
    process killed by that signal.
    """
    from drpo_rl.benchmark.pool import signals_interrupt

    with signals_interrupt() as received:
        try:
            return _bench(args)
        except KeyboardInterrupt as interrupt:
            # A BenchmarkInterrupted says how far the runs got; a bare one (while importing
            # or writing the report) says nothing, and resuming is right either way.
            print(
                f"drpo-rl bench: {interrupt or 'interrupted'}; "
                "re-run with the same --out to resume",
                file=sys.stderr,
            )
            return 128 + (received[0] if received else signal.SIGINT)


def _bench(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from drpo_rl.benchmark.grid import DEFAULT_MAX_STACK, run_benchmark
    from drpo_rl.benchmark.report import write_report
    from drpo_rl.console import quiet_torchrl

    quiet_torchrl()

    hparams: dict[str, dict[str, object]] = {}
    for algorithm, key, value in args.hparams:
        hparams.setdefault(algorithm, {})[key] = value
    spec = env_spec(args)
    preset = args.preset or default_preset(spec.name)
    config = make_config(
        preset,
        sweep=args.sweep,
        scenarios=_names(args.scenarios),
        algorithms=_names(args.algorithms),
        references=_names(args.references),
        seeds=None if args.seeds is None else parse_seeds(args.seeds),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        log_samples=args.log_samples,
        eval_users=args.eval_users,
        device=args.device,
        hparams=hparams or None,
        env=spec.name,
        env_overrides={**PRESETS[preset].env_overrides, **spec.overrides} or None,
    )
    if args.address is not None and args.backend != "ray":
        raise ValueError("--address: only with --backend ray")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: expected an integer >= 1, got {args.workers}")
    out = args.out or Path("bench-results") / (args.sweep or preset)
    # The networks are small: one intra-op thread per process is fastest, and avoids the
    # slow-down that thread contention causes on a busy machine.
    torch.set_num_threads(1)
    console = Console()
    workers = args.workers
    if workers is None:
        workers = default_workers(config.device, os.cpu_count() or 1)
    # An output folder made with other settings, a refused checkpoint or record, a folder
    # another benchmark holds: drpo_rl.cli.main says so in one line (exit status 2).
    report = run_benchmark(
        config,
        out,
        workers=workers,
        progress=not args.no_progress,
        echo=console.print,
        wait=args.wait,
        backend=args.backend,
        address=args.address,
        max_stack=DEFAULT_MAX_STACK if args.max_stack is None else args.max_stack,
        compile=args.compile,
    )
    ope = None
    if args.ope:
        from drpo_rl.evaluation.off_policy.benchmark import benchmark_ope

        ope = (args.ope, benchmark_ope(report.out_dir, report.records, args.ope))
    write_report(report, console=console, plots=not args.no_plots, ope=ope)
    return 0

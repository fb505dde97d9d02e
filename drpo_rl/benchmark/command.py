"""``drpo-rl bench``: the benchmark from the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_bench_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["bench", "--preset", "tiny", "--seeds", "2"])
    >>> args.preset, args.seeds
    ('tiny', '2')
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from drpo_rl.benchmark.presets import PRESETS, SWEEPS, make_config, parse_seeds


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _value(raw: str) -> object:
    """A command-line value: JSON if it parses (number, bool, list), else the string."""
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _hparam(text: str) -> tuple[str, str, object]:
    """``algorithm.key=value`` with a JSON-ish value (number, bool, or string)."""
    target, sep, raw = text.partition("=")
    algorithm, dot, key = target.partition(".")
    if not (sep and dot and algorithm and key):
        raise argparse.ArgumentTypeError(
            f"expected ALGORITHM.KEY=VALUE (e.g. drpo.kappa=0.3), got {text!r}"
        )
    return algorithm, key, _value(raw)


def _env_setting(text: str) -> tuple[str, object]:
    """``key=value`` of the environment's config, with a JSON-ish value."""
    key, sep, raw = text.partition("=")
    if not (sep and key and "." not in key):
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE of the environment config (e.g. reward_noise=0.3), got {text!r}"
        )
    return key, _value(raw)


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
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
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
    parser.add_argument("--device", help="cpu or cuda[:index]")
    parser.add_argument(
        "--set",
        dest="hparams",
        action="append",
        type=_hparam,
        default=[],
        metavar="ALGO.KEY=VALUE",
        help="hyper-parameter override, repeatable (e.g. --set drpo.kappa=0.3)",
    )
    parser.add_argument(
        "--env-set",
        dest="env_settings",
        action="append",
        type=_env_setting,
        default=[],
        metavar="KEY=VALUE",
        help="environment config override, repeatable (e.g. --env-set reward_noise=0.3 "
        "--env-set num_items=1000); the logs and the evaluation share it",
    )
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
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=bench)


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
    with _signals_interrupt() as received:
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


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[list[int]]:
    """SIGTERM, like SIGINT, raises KeyboardInterrupt (once); yields the signals received.

    SIGTERM's default action ends the process at once, leaving the worker processes
    running as orphans; as an exception it goes through the benchmark's clean-up. Later
    signals are only recorded, so that they cannot break off that clean-up. A SIGINT that
    is ignored (a background job of a non-interactive shell) stays ignored.
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handled.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, interrupt) for signum in handled}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _bench(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from drpo_rl.benchmark.report import write_report
    from drpo_rl.benchmark.runner import run_benchmark
    from drpo_rl.console import quiet_torchrl

    quiet_torchrl()

    hparams: dict[str, dict[str, object]] = {}
    for algorithm, key, value in args.hparams:
        hparams.setdefault(algorithm, {})[key] = value
    try:
        config = make_config(
            args.preset,
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
            env_overrides={**PRESETS[args.preset].env_overrides, **dict(args.env_settings)} or None,
        )
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    except ValueError as error:
        # A configuration error is the user's to fix: say what, without a traceback.
        print(f"drpo-rl bench: error: {error}", file=sys.stderr)
        return 2
    out = args.out or Path("bench-results") / (args.sweep or args.preset)
    # The networks are small: one intra-op thread per process is fastest, and avoids the
    # slow-down that thread contention causes on a busy machine.
    torch.set_num_threads(1)
    console = Console()
    workers = args.workers
    if workers is None:
        workers = default_workers(config.device, os.cpu_count() or 1)
    from drpo_rl.benchmark.store import BenchmarkFolderError

    try:
        report = run_benchmark(
            config, out, workers=workers, progress=not args.no_progress, echo=console.print
        )
    except BenchmarkFolderError as error:
        # An output folder made with other settings, or a refused checkpoint: the user's
        # to resolve (the message names the file and what differs).
        print(f"drpo-rl bench: error: {error}", file=sys.stderr)
        return 2
    write_report(report, console=console, plots=not args.no_plots)
    return 0

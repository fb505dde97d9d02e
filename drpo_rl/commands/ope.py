"""``drpo-rl ope``: estimate a trained benchmark run's value from logs alone (off-policy).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_ope_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["ope", "--run", "r.json", "--logs", "logs",
    ...                           "--estimators", "ips,dr"])
    >>> args.estimators, args.interval, args.alpha, args.stochastic
    ('ips,dr', 'bootstrap', 0.05, False)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drpo_rl.commands.options import add_device, add_seed
from drpo_rl.evaluation.off_policy.names import DEFAULT_CLIP, ESTIMATORS


def add_ope_command(subparsers) -> None:
    """Register ``ope`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "ope",
        help="estimate a trained run's value from logged data (off-policy evaluation)",
        description=(
            "Off-policy evaluation: estimate the value of a benchmark run's policy, as "
            "evaluate() runs it, from an offline-logs dataset with the behaviour's "
            "propensities, with intervals and importance-weight diagnostics. Prints a table "
            "(with the run's online value, when it has one) and writes JSON/CSV."
        ),
    )
    parser.add_argument("--run", type=Path, required=True, help="a benchmark run's .json (or .pt)")
    parser.add_argument(
        "--logs",
        type=Path,
        required=True,
        help="an offline-logs dataset folder (drpo-rl generate, or a loader's output)",
    )
    parser.add_argument(
        "--estimators",
        help=f"comma-separated, among {', '.join(ESTIMATORS)} (default: all that fit the logs)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - alpha intervals")
    parser.add_argument("--interval", choices=("bootstrap", "t"), default="bootstrap")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--stochastic",
        action="store_true",
        help="the policy's sampling distribution (default: deterministic, as evaluate runs it)",
    )
    parser.add_argument(
        "--clip", type=float, default=DEFAULT_CLIP, help="clipped-ips/switch-dr weight clip"
    )
    add_seed(parser, default=0, help="reward model, bootstrap and Monte-Carlo seed")
    add_device(parser)
    parser.add_argument("--json", type=Path, help="write the estimates here as JSON")
    parser.add_argument("--csv", type=Path, help="write the estimates here as CSV")
    parser.set_defaults(func=ope_command)


def ope_command(args: argparse.Namespace) -> int:
    """Run the off-policy evaluation the parsed ``args`` describe; returns 0."""
    from rich.console import Console

    from drpo_rl.benchmark.policies import load_trained_run
    from drpo_rl.data import OfflineLogs
    from drpo_rl.evaluation import off_policy_evaluate
    from drpo_rl.evaluation.off_policy.report import estimates_table, write_estimates
    from envs.devices import check_device

    device = check_device(args.device)
    run = load_trained_run(args.run)
    logs = OfflineLogs(args.logs)
    estimators = None
    if args.estimators is not None:
        estimators = tuple(name.strip() for name in args.estimators.split(",") if name.strip())
    estimates = off_policy_evaluate(
        run.policy.to(device),
        logs,
        estimators=estimators,
        alpha=args.alpha,
        interval=args.interval,
        num_bootstrap=args.bootstrap,
        seed=args.seed,
        deterministic=not args.stochastic,
        env=run.env_spec,
        clip=args.clip,
    )
    online = run.record.get("metrics", {})
    truth = online.get("return", online.get("reward"))
    title = f"{args.run} on {args.logs} (off-policy)"
    if truth is not None:
        title += f"; online value in the benchmark {truth:.4f}"
    console = Console()
    console.print(estimates_table(estimates, title=title, truth=truth))
    written = write_estimates(
        estimates,
        json_path=args.json,
        csv_path=args.csv,
        run=str(args.run),
        logs=str(args.logs),
        online_value=truth,
    )
    if written:
        console.print("wrote " + ", ".join(str(p) for p in written))
    return 0

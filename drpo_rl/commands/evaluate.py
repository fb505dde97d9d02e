"""``drpo-rl evaluate``: evaluate a trained benchmark run, or the oracle, against simulated users.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_evaluate_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["evaluate", "--oracle", "--num-users", "1000"])
    >>> args.oracle, args.num_users, args.device, args.env
    (True, 1000, 'cpu', 'RecSimBandit')
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drpo_rl.commands.options import add_device, add_env_options, add_seed, env_spec


def add_evaluate_command(subparsers) -> None:
    """Register ``evaluate`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained benchmark run (or the oracle) online",
        description=(
            "Roll a policy deterministically through simulated users and print its online "
            "metrics. RUN is a run of a benchmark folder (runs/<scenario>/<algorithm>/"
            "seed-<k>.json); by default it is evaluated with the benchmark's env, users and "
            "seed, which reproduces the benchmark's number."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("run", nargs="?", type=Path, help="a benchmark run's .json (or .pt)")
    source.add_argument("--oracle", action="store_true", help="evaluate the oracle policy")
    add_env_options(parser, env_help="; for --oracle (a RUN is evaluated on its own env)")
    parser.add_argument("--num-users", type=int, help="simulated users (default: the run's)")
    add_seed(parser, default=None, help="evaluation seed (default: the run's; 0 for --oracle)")
    add_device(parser)
    parser.add_argument("--batch-size", type=int, help="users per chunk")
    parser.add_argument("--price", type=float, default=5.0, help="eCPM per unit of reward")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(func=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    """Run the evaluation the parsed ``args`` describe; prints the metrics, returns 0."""
    import time

    import torch
    from rich.console import Console
    from rich.table import Table

    from drpo_rl.evaluation import evaluate, oracle_policy
    from envs.devices import check_device

    check_device(args.device)
    if args.run is not None:
        from drpo_rl.benchmark.policies import load_trained_run

        if args.env_overrides:
            raise ValueError("--env-set applies to --oracle; a RUN is evaluated on its env")
        run = load_trained_run(args.run)
        policy, spec = run.policy, run.env_spec
        seed = run.eval_seed if args.seed is None else args.seed
        num_users = run.eval_users if args.num_users is None else args.num_users
    else:
        spec = env_spec(args)
        policy = oracle_policy(spec.make(device=args.device))
        seed = 0 if args.seed is None else args.seed
        num_users = 10_000 if args.num_users is None else args.num_users
    start = time.perf_counter()
    metrics = evaluate(
        policy.to(args.device),
        spec,
        num_users=num_users,
        device=torch.device(args.device),
        seed=seed,
        batch_size=args.batch_size,
        price=args.price,
    )
    seconds = time.perf_counter() - start
    metrics["users_per_second"] = num_users / seconds
    if args.json:
        print(json.dumps(metrics, indent=1))
        return 0
    table = Table(title=f"{args.run or 'oracle'} on {spec.name} ({args.device}, seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}")
    Console().print(table)
    return 0

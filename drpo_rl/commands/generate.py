"""``drpo-rl generate``: mixed-quality offline logs from the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_generate_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["generate", "logs/medium", "--env-set", "num_items=50"])
    >>> args.env, args.scenario, args.num_samples, args.env_overrides
    ('RecSimBandit', 'medium', 100000, [('num_items', 50)])
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drpo_rl.commands.options import (
    DeprecatedEnvSet,
    add_device,
    add_env_options,
    add_no_progress,
    add_seed,
    env_setting,
    env_spec,
)


def add_generate_command(subparsers) -> None:
    """Register ``generate`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "generate",
        help="log a behaviour mixture's interactions with simulated users",
        description=(
            "Step a simulated env under a scenario's behaviour mixture (expert, suboptimal, "
            "random, ...) with a TorchRL collector into a memory-mapped dataset at PATH, with "
            "a metadata.json that reproduces it. An existing PATH made with the same settings "
            "is opened, not regenerated; one made with other settings is an error."
        ),
    )
    parser.add_argument("path", type=Path, help="dataset folder to write (or re-open)")
    add_env_options(parser)
    parser.add_argument(
        "--scenario",
        default="medium",
        help="clean, medium, extreme or noise-<p> (p in 0..80)",
    )
    parser.add_argument("--num-samples", type=int, default=100_000, help="interactions to log")
    add_seed(parser, default=0, help="seed of the users and the behaviour (default: 0)")
    add_device(parser)
    parser.add_argument("--num-envs", type=int, help="users simulated in parallel")
    # Until this release --set took env config overrides here; --set is for algorithm
    # hyper-parameters everywhere else, so the old spelling warns for one release.
    parser.add_argument(
        "--set",
        action=DeprecatedEnvSet,
        type=env_setting,
        metavar="KEY=VALUE",
        help="deprecated spelling of --env-set",
    )
    add_no_progress(parser)
    parser.set_defaults(func=generate)


def generate(args: argparse.Namespace) -> int:
    """Generate (or re-open) the logs ``args`` describe and print a summary; returns 0."""
    from drpo_rl.console import quiet_torchrl
    from drpo_rl.data.generate import generate_logs

    quiet_torchrl()

    spec = env_spec(args)
    logs = generate_logs(
        spec,
        args.scenario,
        args.num_samples,
        path=args.path,
        seed=args.seed,
        device=args.device,
        num_envs=args.num_envs,
        progress=not args.no_progress,
    )
    rows = logs[:]
    reward = rows["next", "reward"].float()
    print(f"{logs.metadata['storage']['num_rows']} rows at {args.path}")
    print(f"mean logged reward {reward.mean():.4f} (scenario {logs.metadata['scenario']['name']})")
    return 0

"""``drpo-rl generate``: mixed-quality offline logs from the command line.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_generate_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["generate", "logs/medium", "--scenario", "medium"])
    >>> args.env, args.scenario, args.num_samples, args.set
    ('RecSimBanditDiscrete', 'medium', 100000, [])
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _override(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` of the env config, the value read as JSON when it parses."""
    field, sep, raw = text.partition("=")
    if not (sep and field):
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE (e.g. num_items=500), got {text!r}")
    try:
        return field, json.loads(raw)
    except json.JSONDecodeError:
        return field, raw


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
    parser.add_argument("--env", default="RecSimBanditDiscrete", help="an env of envs.list_envs()")
    parser.add_argument(
        "--scenario",
        default="medium",
        help="clean, medium, extreme or noise-<p> (p in 0..80)",
    )
    parser.add_argument("--num-samples", type=int, default=100_000, help="interactions to log")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    parser.add_argument("--num-envs", type=int, help="users simulated in parallel")
    parser.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="env config override, repeatable (e.g. --set num_items=500)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=generate)


def generate(args: argparse.Namespace) -> int:
    """Generate (or re-open) the logs ``args`` describe and print a summary; returns 0."""
    from drpo_rl.console import quiet_torchrl
    from drpo_rl.data.generate import generate_logs

    quiet_torchrl()

    try:
        logs = generate_logs(
            args.env,
            args.scenario,
            args.num_samples,
            path=args.path,
            seed=args.seed,
            device=args.device,
            num_envs=args.num_envs,
            progress=not args.no_progress,
            **dict(args.set),
        )
    except ValueError as error:
        # Bad names, sizes or a settings mismatch are the user's to fix: no traceback.
        print(f"drpo-rl generate: error: {error}", file=sys.stderr)
        return 2
    rows = logs[:]
    reward = rows["next", "reward"].float()
    print(f"{logs.metadata['storage']['num_rows']} rows at {args.path}")
    print(f"mean logged reward {reward.mean():.4f} (scenario {logs.metadata['scenario']['name']})")
    return 0

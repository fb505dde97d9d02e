"""The ``drpo-rl`` console script: the parser of :mod:`drpo_rl.commands`, and :func:`main`.

Example:
    >>> build_parser().parse_args(["generate", "logs", "--env-set", "num_items=50"]).env
    'RecSimBandit'
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from drpo_rl import __version__
from drpo_rl.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drpo-rl",
        description=(
            "DRPO and its baselines for off-policy recommendation: simulate users, "
            "generate mixed-quality logs, train, evaluate, benchmark."
        ),
    )
    parser.add_argument("--version", action="version", version=f"drpo-rl {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for target in COMMANDS.values():
        module_name, function_name = target.split(":")
        getattr(importlib.import_module(module_name), function_name)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The ``drpo-rl`` command line.

Each sub-command lives in its own module and registers itself through ``COMMANDS``: a
mapping from the sub-command's name to ``"module:function"``, where the function takes the
sub-parsers object and adds its parser (with ``func`` set as a default). Modules are imported
only when the command line is built, so ``drpo-rl --help`` does not pay for torch imports of
commands it does not run.

Example:
    >>> from drpo_rl.cli import build_parser
    >>> build_parser().parse_args(["--version"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from drpo_rl import __version__

COMMANDS: dict[str, str] = {
    "bench": "drpo_rl.benchmark.command:add_bench_command",
    "evaluate": "drpo_rl.evaluation.command:add_evaluate_command",
    "generate": "drpo_rl.data.command:add_generate_command",
}


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

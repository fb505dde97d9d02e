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


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "fix this input" (a file, a setting, a folder), not a bug: each
    message names what to fix, so the command line prints it as one line (exit status 2).

    ``ValueError`` covers the suite's input errors (``TableError``, ``BenchmarkFolderError``,
    unknown config fields, refused checkpoints); ``OSError`` missing or unwritable files
    and a full disk.
    """
    from envs.common.locks import FolderBusyError

    return (ValueError, OSError, FolderBusyError, MemoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drpo-rl",
        description=(
            "DRPO and its baselines for off-policy recommendation: simulate users, "
            "generate mixed-quality logs, train, evaluate, benchmark."
        ),
    )
    parser.add_argument("--version", action="version", version=f"drpo-rl {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for target in COMMANDS.values():
        module_name, function_name = target.split(":")
        getattr(importlib.import_module(module_name), function_name)(subparsers)
    for sub in subparsers.choices.values():
        # Also after the sub-command (drpo-rl bench --debug); SUPPRESS keeps the top one.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


_DEBUG_HELP = "on an error, show the full traceback (default: one line saying what to fix)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except user_errors() as error:
        if args.debug:
            raise
        print(f"drpo-rl {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        detail = str(error) or "MemoryError"
        return f"not enough memory ({detail}); ask for less (fewer rows, users or items)"
    text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())

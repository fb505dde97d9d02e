"""``drpo-rl load``: an interaction log (CSV, Parquet, JSON lines) as an offline-logs folder.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_load_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["load", "log.csv", "logs", "--column", "user=uid",
    ...                           "--column", "propensity=pscore", "--bad-rows", "skip"])
    >>> args.columns, args.bad_rows, args.split
    ([('user', 'uid'), ('propensity', 'pscore')], 'skip', [0.8, 0.1, 0.1])
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drpo_rl.commands.options import add_no_progress


def _column(text: str) -> tuple[str, str | None]:
    role, sep, name = text.partition("=")
    if not (sep and role):
        raise argparse.ArgumentTypeError(f"expected ROLE=COLUMN (e.g. user=uid), got {text!r}")
    return role, (name or None)


def add_load_command(subparsers) -> None:
    """Register ``load`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "load",
        help="load your own interaction log into an offline-logs folder",
        description=(
            "Read a log of (user, item, reward[, propensity], time[, session]) rows from a "
            "CSV, Parquet or JSON-lines file in chunks into a memory-mapped offline-logs "
            "folder OUT: histories of recent items, dense ids (the raw ids kept), a time "
            "split into train/validation/test (drpo_rl.data.load_interactions)."
        ),
    )
    parser.add_argument("source", type=Path, help="the log file (.csv, .tsv, .parquet, .jsonl)")
    parser.add_argument("out", type=Path, help="the dataset folder to write (or re-open)")
    parser.add_argument(
        "--column",
        dest="columns",
        action="append",
        type=_column,
        default=[],
        metavar="ROLE=COLUMN",
        help="the column of a role (user, item, reward, propensity, time, session), "
        "repeatable; ROLE= (empty) for none (default names: the roles themselves)",
    )
    parser.add_argument("--user-features", type=Path, help="a table of user features")
    parser.add_argument("--item-features", type=Path, help="a table of item features")
    parser.add_argument("--history-length", type=int, default=5, help="recent items (K)")
    parser.add_argument(
        "--reward-scale", type=float, nargs=2, default=[0.0, 1.0], metavar=("LOW", "HIGH")
    )
    parser.add_argument(
        "--split", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST")
    )
    parser.add_argument("--bad-rows", choices=("raise", "skip"), default="raise")
    parser.add_argument("--chunk-size", type=int, default=1_000_000, help="rows per chunk")
    add_no_progress(parser)
    parser.set_defaults(func=load)


def load(args: argparse.Namespace) -> int:
    """Load the log ``args`` name and print a summary; returns 0."""
    from drpo_rl.console import quiet_torchrl
    from drpo_rl.data import load_interactions

    quiet_torchrl()
    logs = load_interactions(
        args.source,
        args.out,
        columns=dict(args.columns),
        user_features=args.user_features,
        item_features=args.item_features,
        history_length=args.history_length,
        reward_scale=tuple(args.reward_scale),
        split=tuple(args.split),
        bad_rows=args.bad_rows,
        chunk_size=args.chunk_size,
    )
    meta = logs.metadata
    skipped = meta["rows_skipped"]
    print(
        f"{len(logs)} rows at {args.out}: {meta['num_users']} users, {meta['num_items']} items, "
        f"{meta['num_trajectories']} trajectories; split {meta['splits']['rows']} "
        f"(train/validation/test)"
    )
    if skipped["total"]:
        print(
            f"skipped {skipped['total']} bad rows {skipped['by_column']}; first: {skipped['first']}"
        )
    if not meta["propensity"]["logged"]:
        print(f"no propensities: {meta['propensity']['cannot']}")
    return 0

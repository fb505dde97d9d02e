"""``drpo-rl recommend``: top-k items for users' histories from a trained run; export.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_recommend_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["recommend", "run", "--history", "h.csv", "--k", "5"])
    >>> args.k, args.out, args.export
    (5, None, None)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drpo_rl.commands.options import add_device


def add_recommend_command(subparsers) -> None:
    """Register ``recommend`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "recommend",
        help="recommend items with a trained run (CSV in, CSV out), or export it",
        description=(
            "Read users' histories from a CSV (columns user, item and optionally reward, "
            "rows oldest first per user), answer each user's top-k items in the raw ids of "
            "the logs with the run's policy (drpo_rl.load_policy), and write a CSV (user, "
            "rank, item) to --out or print it. --export writes the observation -> top-k "
            "module with torch.export."
        ),
    )
    parser.add_argument("run", type=Path, help="a run folder of drpo-rl train")
    parser.add_argument("--history", type=Path, help="CSV of users' histories")
    parser.add_argument("--k", type=int, default=10, help="items per user")
    parser.add_argument("--out", type=Path, help="CSV to write (default: print)")
    parser.add_argument("--export", type=Path, help="write the top-k module here (.pt2)")
    add_device(parser)
    parser.set_defaults(func=recommend)


def recommend(args: argparse.Namespace) -> int:
    """Recommend (and export) as ``args`` say; returns 0."""
    import pandas as pd

    from drpo_rl.serving import load_policy

    recommender = load_policy(args.run, device=args.device)
    if args.export is not None:
        recommender.export(args.export, k=args.k)
        print(f"exported the top-{args.k} module to {args.export}")
    if args.history is None:
        return 0
    # Ids as the logs hold them: text ids stay text ("007" is not 7).
    text = isinstance(recommender.item_ids[0], str)
    frame = pd.read_csv(args.history, dtype=str if text else None, keep_default_na=False)
    missing = [c for c in ("user", "item") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{args.history}: expected columns user, item[, reward], missing {missing}"
        )
    groups = list(frame.groupby("user", sort=False))
    users = [user for user, _ in groups]
    history = [list(rows["item"]) for _, rows in groups]
    rewards = None
    if "reward" in frame.columns:
        rewards = [pd.to_numeric(rows["reward"]).tolist() for _, rows in groups]
    needs_users = any(
        part["name"] in ("user_features", "preference")
        for part in recommender.config["observation_layout"]
    )
    if needs_users and not isinstance(recommender.config["user_ids"][0], str):
        users = [int(u) for u in users]
    top = recommender.recommend(
        history, args.k, rewards=rewards, users=users if needs_users else None
    )
    out = pd.DataFrame(
        [
            (user, rank + 1, item)
            for user, items in zip(users, top, strict=True)
            for rank, item in enumerate(items)
        ],
        columns=["user", "rank", "item"],
    )
    if args.out is None:
        print(out.to_csv(index=False), end="")
    else:
        out.to_csv(args.out, index=False)
        print(f"{len(users)} users, {args.k} items each, written to {args.out}")
    return 0

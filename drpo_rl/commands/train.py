"""``drpo-rl train``: train a registry algorithm on an offline-logs folder, no simulator.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="drpo-rl")
    >>> add_train_command(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", "--logs", "logs", "--out", "run",
    ...                           "--set", "drpo.kappa=0.3"])
    >>> args.algorithm, args.steps, args.logger, args.hparams
    ('drpo', 2000, 'csv', [('drpo', 'kappa', 0.3)])
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from drpo_rl.commands.options import add_device, add_hparams, add_no_progress, add_seed


def add_train_command(subparsers) -> None:
    """Register ``train`` on the ``drpo-rl`` sub-parsers."""
    parser = subparsers.add_parser(
        "train",
        help="train an algorithm on offline logs (generated or loaded), no simulator",
        description=(
            "Train a registry algorithm on the train split of an offline-logs folder (from "
            "drpo-rl generate, load_interactions or a shipped loader), scoring it on the "
            "validation split at every evaluation point (reward-weighted hit rate), with "
            "early stopping, checkpoints (--resume continues) and a TorchRL logger. The run "
            "folder OUT holds config.json, policy.pt (the best policy) and metrics.json "
            "(learning curve, best point, the logged value on the test split)."
        ),
    )
    parser.add_argument("--logs", type=Path, required=True, help="the offline-logs folder")
    parser.add_argument("--out", type=Path, required=True, help="the run folder to write")
    parser.add_argument("--algorithm", default="drpo", help="a registry algorithm (offline)")
    parser.add_argument("--steps", type=int, default=2000, help="gradient updates at most")
    parser.add_argument("--batch-size", type=int, help="rows per update (registry default)")
    parser.add_argument("--lr", type=float, help="learning rate (registry default)")
    parser.add_argument("--eval-points", type=int, default=20, help="validation evaluations")
    parser.add_argument(
        "--patience",
        type=int,
        default=5,
        help="evaluations without a better validation score before stopping (0: never)",
    )
    parser.add_argument("--k", type=int, default=10, help="cut-off of the validation hit rate")
    parser.add_argument(
        "--logger",
        default="csv",
        choices=("csv", "tensorboard", "wandb", "none"),
        help="TorchRL logger (tensorboard and wandb need their packages)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an unfinished run")
    parser.add_argument(
        "--filter-scope",
        choices=("rank", "global"),
        default="rank",
        help=(
            "under torchrun: DRPO's top-kappa filter per rank's batch, or over the batches of "
            "all ranks (equal to one process on their concatenation)"
        ),
    )
    add_hparams(parser)
    add_seed(parser, default=0, help="seed of the initialisation and batches (default: 0)")
    add_device(parser)
    add_no_progress(parser)
    parser.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    """Train as ``args`` say, print the summary; returns 0.

    Started by ``torchrun`` with several ranks, it trains data-parallel instead
    (:func:`drpo_rl.distributed.train.train_distributed`: DDP, each rank on its shard of the
    logs, checkpoints at the evaluation points); the validation split, early stopping and
    the logger are features of the one-process run.
    """
    from drpo_rl.console import quiet_torchrl
    from drpo_rl.distributed.process_group import launched_by_torchrun
    from drpo_rl.offline_training import train_on_logs

    quiet_torchrl()
    other = sorted({algo for algo, _, _ in args.hparams} - {args.algorithm})
    if other:
        raise ValueError(f"--set: hyper-parameters of {other}, but --algorithm is {args.algorithm}")
    if launched_by_torchrun():
        return _train_distributed(args)
    metrics = train_on_logs(
        args.logs,
        args.out,
        algorithm=args.algorithm,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        hparams={key: value for _, key, value in args.hparams},
        eval_points=args.eval_points,
        patience=args.patience or None,
        k=args.k,
        logger=args.logger,
        resume=args.resume,
        progress=not args.no_progress,
    )
    best, logged = metrics["best"], metrics["test"]["logged"]
    print(f"{args.algorithm}: {metrics['steps_done']} steps on {metrics['train_rows']} rows")
    if best["validation_hit_rate"] is not None:
        print(
            f"best validation hit rate@{args.k} {best['validation_hit_rate']:.4f} at step "
            f"{best['step']}" + (" (stopped early)" if metrics["stopped_early"] else "")
        )
    if logged["value"] is not None:
        print(
            f"logged value on the test split {logged['value']:.4f} "
            f"[{logged['low']:.4f}, {logged['high']:.4f}] ({logged['rows']} rows)"
        )
    estimates = metrics["test"]["off_policy"]
    if "skipped" in estimates:
        print(f"off-policy estimates: none ({estimates['skipped']})")
    else:
        print(
            "off-policy estimates of the trained policy on the test split: "
            + ", ".join(
                f"{n} {e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]"
                for n, e in estimates.items()
            )
        )
    print(f"run folder {args.out}: {json.dumps(sorted(p.name for p in args.out.iterdir()))}")
    return 0


def _train_distributed(args: argparse.Namespace) -> int:
    from drpo_rl.algorithms.algorithm import DEFAULT_BATCH_SIZE
    from drpo_rl.distributed.train import train_distributed

    record = train_distributed(
        args.logs,
        args.algorithm,
        steps=args.steps,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
        seed=args.seed,
        lr=args.lr,
        hparams={key: value for _, key, value in args.hparams},
        filter_scope=args.filter_scope,
        out=args.out,
        checkpoint_every=max(1, args.steps // max(1, args.eval_points)),
        device=args.device,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(
        f"{args.algorithm}: {record['steps']} steps on {record['world_size']} ranks "
        f"({record['batch_size_per_rank']} rows per rank and step, filter {args.filter_scope})"
    )
    return 0

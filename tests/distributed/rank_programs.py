"""What one rank of a test's process group runs: ``python rank_programs.py PROGRAM RANK
WORLD RENDEZVOUS FOLDER [ARGS]``. Each program writes what the test compares to FOLDER.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from tensordict import TensorDict

import drpo_rl.distributed.logs as sharded
from drpo_rl.algorithms import build
from drpo_rl.distributed.logs import generate_sharded_logs
from drpo_rl.distributed.process_group import init_from_env
from drpo_rl.distributed.train import data_parallel, train_distributed
from drpo_rl.models import PolicySpecs

TIMEOUT = timedelta(seconds=60)
SPECS = PolicySpecs(obs_dim=4, num_items=6)
STEPS = 3
ROWS_PER_RANK = 16


#: The runs of ddp_steps: (name, filter scope, with user groups and a validity mask).
RUNS = (("global", "global", False), ("rank", "rank", False), ("masked", "global", True))


def ddp_steps(rank: int, world: int, folder: Path) -> None:
    """STEPS DRPO updates on this rank's part of fixed batches, through DDP, per run."""
    for name, scope, masked in RUNS:
        _ddp_steps(rank, world, folder, name, scope, masked)


def _ddp_steps(rank: int, world: int, folder: Path, name: str, scope: str, masked) -> None:
    # The test starts its one-process run from this algorithm's saved initial state.
    torch.manual_seed(0)
    algo = build("drpo", SPECS, kappa=0.3, num_cells=8)
    if masked:
        algo.loss_modules["policy"].set_keys(group="user")
    generator = torch.Generator().manual_seed(1)
    rows = world * ROWS_PER_RANK
    batches = []
    for _ in range(STEPS):
        batch = TensorDict(
            {
                "observation": torch.randn(rows, 4, generator=generator),
                "action": torch.randint(6, (rows,), generator=generator),
                ("next", "reward"): torch.rand(rows, 1, generator=generator),
            },
            [rows],
        )
        if masked:
            # Users spread over both ranks; a different number of valid rows per rank.
            batch["user"] = torch.randint(5, (rows,), generator=generator)
            batch["collector", "mask"] = torch.rand(rows, generator=generator) < 0.7
        batches.append(batch)
    if rank == 0:
        states = {k: m.state_dict() for k, m in algo.loss_modules.items()}
        torch.save({"batches": batches, "initial": states}, folder / f"inputs-{name}.pt")
    ranks = init_from_env("cpu")
    parallel = data_parallel(algo, ranks, filter_scope=scope)
    mine = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
    terms = [parallel.update(batch[mine]) for batch in batches]
    torch.save(
        {
            "losses": {k: m.state_dict() for k, m in algo.loss_modules.items()},
            "terms": terms,
        },
        folder / f"rank-{rank}-{name}.pt",
    )


def train_dies(rank: int, world: int, folder: Path, logs: str, die_at: str) -> None:
    """train_distributed on ``logs``; rank 1 dies (without a word) at step ``die_at``."""

    def on_step(step: int, terms) -> None:
        if rank == 1 and step == int(die_at):
            os._exit(3)

    train_distributed(
        logs,
        "drpo",
        steps=20,
        batch_size=8,
        hparams={"num_cells": 8},
        out=folder / "run",
        checkpoint_every=2,
        timeout_seconds=30,
        on_step=on_step,
    )


def learner(rank: int, world: int, folder: Path, logs: str, die_at: str) -> None:
    """ddp_steps, then train_dies (one launch: starting the ranks is what costs)."""
    ddp_steps(rank, world, folder)
    train_dies(rank, world, folder, logs, die_at)


LOGS = {"env_name": "RecSimBanditDiscrete", "scenario": "medium", "num_items": 20}


def sharded_logs(rank: int, world: int, folder: Path, rows: str, shards: str) -> None:
    """generate_sharded_logs of ``rows`` rows in ``shards`` shards at ``folder/logs``, then
    again at ``folder/logs-die``, where rank 1 dies after writing its first shard."""
    options = {"num_samples": int(rows), "seed": 0, "shards": int(shards), **LOGS}
    generate_sharded_logs(path=folder / "logs", **options)
    if rank == 1:
        write = sharded._write_shard

        def write_then_die(files, *args):
            write(files, *args)
            os._exit(3)

        sharded._write_shard = write_then_die
    generate_sharded_logs(path=folder / "logs-die", **options)


PROGRAMS = {"learner": learner, "sharded_logs": sharded_logs}


def main() -> None:
    program, rank, world, rendezvous, folder, *args = sys.argv[1:]
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    try:
        PROGRAMS[program](rank, world, Path(folder), *args)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

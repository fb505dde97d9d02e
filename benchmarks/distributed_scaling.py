"""Scaling of the distributed learner and evaluation with the number of processes (not a test).

Two measurements, each at 1 and 2 processes on this machine, as ratios measured in one run:

- DDP learner: ``torchrun --standalone --nproc-per-node N -m drpo_rl.distributed.train``
  on the same logs, ``--batch-size`` rows per rank (so 2 ranks see twice the rows per
  step); the learner's own steps per second (start-up excluded), and rows per second.
- Evaluation: :func:`drpo_rl.distributed.evaluation.evaluate_sharded` of the same policy
  on ``--eval-users`` users in 2 seeded groups, in this process (1 worker) and over 2
  workers of TorchRL's ``DistributedCollector``; simulated users per second, wall clock
  including the workers' start-up, and the check that both give the same numbers.

Usage::

    python benchmarks/distributed_scaling.py                       # CPU, gloo
    python benchmarks/distributed_scaling.py --steps 500 --eval-users 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from drpo_rl.algorithms import build
from drpo_rl.distributed.evaluation import evaluate_sharded
from drpo_rl.distributed.logs import generate_sharded_logs
from drpo_rl.models import PolicySpecs
from envs import EnvSpec

REPO = Path(__file__).resolve().parents[1]


def learner_steps_per_second(logs: Path, ranks: int, args, out: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={ranks}",
        "-m",
        "drpo_rl.distributed.train",
        "--",
        "--logs",
        str(logs),
        "--algorithm",
        "drpo",
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--filter-scope",
        "global",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run(command, env=env, check=True, capture_output=True)
    return json.loads((out / "record.json").read_text())["steps_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=320)
    parser.add_argument("--log-rows", type=int, default=20_000)
    parser.add_argument("--eval-users", type=int, default=200_000)
    parser.add_argument("--num-items", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="distributed-scaling-"))
    spec = EnvSpec("RecSimBanditDiscrete", {"num_items": args.num_items})
    try:
        logs = folder / "logs"
        generate_sharded_logs(spec, "medium", args.log_rows, path=logs, seed=0, shards=2)
        print(f"DDP learner (drpo, global filter, {args.batch_size} rows per rank and step)")
        rates = {}
        for ranks in (1, 2):
            rates[ranks] = learner_steps_per_second(logs, ranks, args, folder / f"run-{ranks}")
            rows = rates[ranks] * ranks * args.batch_size
            print(f"  {ranks} rank(s): {rates[ranks]:8.1f} steps/s  {rows:10.0f} rows/s")
        print(
            f"  ratio 2/1: steps/s {rates[2] / rates[1]:.2f}, rows/s {2 * rates[2] / rates[1]:.2f}"
        )

        torch.manual_seed(0)
        policy = build("bc", PolicySpecs.from_env(spec.make())).policy
        print(f"Evaluation ({args.eval_users} users in 2 seeded groups)")
        results, speeds = {}, {}
        for workers in (1, 2):
            started = time.perf_counter()
            results[workers] = evaluate_sharded(
                policy, spec, num_users=args.eval_users, shards=2, workers=workers
            )
            speeds[workers] = args.eval_users / (time.perf_counter() - started)
            print(f"  {workers} worker(s): {speeds[workers]:10.0f} users/s (with start-up)")
        print(f"  ratio 2/1: {speeds[2] / speeds[1]:.2f}; same numbers: {results[1] == results[2]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""MLP vs causal-transformer policy on UserSession logs: DRPO and BC, trained from SliceSampler
batches of sessions, evaluated online by ``drpo_rl.evaluation.evaluate``.

    PYTHONPATH=. python benchmarks/sequence_policy.py --samples 16384 --steps 500 --users 1000

Prints one row per (scenario, algorithm, policy: the MLP with its per-item head, the MLP with
the transformer's two-tower head, the transformer) with the session return (mean over seeds,
each seed's value, and the seeds' mean 95% half-width over users), the per-step reward and
the training seconds, and the uniform-random policy's return as the floor. The same logs
and evaluation users serve every row.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torchrl.data import SliceSampler

from drpo_rl.algorithms import build
from drpo_rl.data import generate_logs
from drpo_rl.data.behavior import RandomPolicy
from drpo_rl.evaluation import evaluate
from envs import make_env

ENV = "UserSession"
EVAL_SEED = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["extreme"])
    parser.add_argument("--algorithms", nargs="+", default=["drpo", "bc"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--samples", type=int, default=16384, help="logged steps")
    parser.add_argument("--steps", type=int, default=500, help="gradient steps")
    parser.add_argument("--slices", type=int, default=32, help="sessions per batch")
    parser.add_argument("--slice-len", type=int, default=8, help="steps per slice")
    parser.add_argument("--users", type=int, default=1000, help="evaluation users")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-cells", type=int, default=64)
    parser.add_argument("--seq-dim", type=int, default=32)
    parser.add_argument("--seq-layers", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(1)
    env = make_env(ENV, num_envs=2, seed=0)
    uniform = evaluate(RandomPolicy.from_env(env), ENV, num_users=args.users, seed=EVAL_SEED)
    print(f"uniform policy: return {uniform['return']:.2f} +- {uniform['return_ci95']:.2f}")
    sizes = {
        "mlp": {"policy": "mlp", "num_cells": args.num_cells},
        # The transformer's item head (dot product with the catalogue) on the MLP.
        "mlp two-tower": {"policy": "mlp", "num_cells": args.num_cells, "head": "two_tower"},
        "transformer": {
            "policy": "transformer",
            "num_cells": args.num_cells,
            "seq_dim": args.seq_dim,
            "seq_layers": args.seq_layers,
        },
    }
    print("scenario | algorithm | policy | return (mean; per seed) | +-95% | reward | train s")
    for scenario in args.scenarios:
        sampler = SliceSampler(slice_len=args.slice_len, traj_key=("collector", "traj_ids"))
        logs = generate_logs(
            ENV,
            scenario,
            args.samples,
            path=tempfile.mkdtemp() + "/logs",
            seed=0,
            progress=False,
            batch_size=args.slices * args.slice_len,
            sampler=sampler,
        )
        for algorithm in args.algorithms:
            for policy, hparams in sizes.items():
                runs = []
                for seed in args.seeds:
                    torch.manual_seed(seed)
                    algo = build(algorithm, env, lr=args.lr, **hparams)
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        algo.update(logs.sample())
                    seconds = time.perf_counter() - start
                    metrics = evaluate(algo.policy, ENV, num_users=args.users, seed=EVAL_SEED)
                    runs.append((metrics, seconds))
                returns = [m["return"] for m, _ in runs]
                print(
                    f"{scenario} | {algorithm} | {policy} | {statistics.mean(returns):.2f}; "
                    + "/".join(f"{r:.2f}" for r in returns)
                    + f" | {statistics.mean(m['return_ci95'] for m, _ in runs):.2f}"
                    + f" | {statistics.mean(m['reward'] for m, _ in runs):.3f}"
                    + f" | {statistics.mean(s for _, s in runs):.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Online-evaluation throughput: simulated users per second of ``evaluate()`` (not a test).

For each user count, ``drpo_rl.evaluation.evaluate`` (TorchRL Collector, deterministic
policy, streaming metrics, chunks of ``--batch-size`` users) on its evaluation env (built
once, as the benchmark does: ``evaluation_env``, with the privileged oracle per step) is
timed against bare stepping of the same env, policy and chunk size in a plain loop
(reset, policy, ``env.step``; no collector, no metrics). Ratio = evaluate / bare: the
share of the env's own speed the evaluation keeps (1.0 = no overhead).

The policy is a fresh Gaussian actor over item embeddings (the paper's policy form, 128
units, 2 layers) on ``RecSimBandit``, or an item-id categorical actor with
``--env RecSimBanditDiscrete``; its outputs do not matter for speed.

Usage::

    python benchmarks/eval_throughput.py                                  # 10k and 100k, CPU
    python benchmarks/eval_throughput.py --device cuda --num-users 1000000
"""

from __future__ import annotations

import argparse
import time

import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type

import envs
from drpo_rl.evaluation import evaluate, evaluation_env
from drpo_rl.models import make_actor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_users_per_second(policy, args, num_users: int, chunk: int) -> float:
    """Users/s of reset + policy + env.step in a plain loop, ``chunk`` users at a time, on
    the env evaluate() uses (with its privileged outputs: the oracle per step)."""
    env = evaluation_env(args.env, num_users, device=args.device, batch_size=chunk)
    rounds = -(-num_users // chunk)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        env.step(policy(env.reset()))  # warm-up
        _sync(env.device)
        start = time.perf_counter()
        for _ in range(rounds):
            env.step(policy(env.reset()))
        _sync(env.device)
    return rounds * chunk / (time.perf_counter() - start)


def evaluate_users_per_second(policy, args, num_users: int, chunk: int) -> tuple[float, dict]:
    """Users/s of evaluate() on its env, built once beforehand (as the benchmark does)."""
    device = torch.device(args.device)
    env = evaluation_env(args.env, num_users, device=device, batch_size=chunk)
    evaluate(policy, env, num_users=chunk, device=device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    metrics = evaluate(policy, env, num_users=num_users, device=device)
    _sync(device)
    return num_users / (time.perf_counter() - start), metrics


def _default_chunk_for(args, num_users: int) -> int:
    """The chunk size evaluate() picks by itself for this env, device and user count."""
    return int(evaluation_env(args.env, num_users, device=args.device).batch_size[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--env", default="RecSimBandit")
    parser.add_argument("--num-users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--batch-size",
        type=int,
        help="users per chunk (default: evaluate()'s own choice for the device, capped "
        "at the user count)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    policy = make_actor(envs.make_env(args.env, device=device)).to(device)
    print(f"env {args.env} on {device}, {args.threads} thread(s); policy: {type(policy).__name__}")
    print(f"{'users':>10} {'chunk':>8} {'bare users/s':>14} {'evaluate users/s':>17} {'ratio':>6}")
    for num_users in args.num_users:
        chunk = args.batch_size or _default_chunk_for(args, num_users)
        bare = bare_users_per_second(policy, args, num_users, chunk)
        rate, metrics = evaluate_users_per_second(policy, args, num_users, chunk)
        print(f"{num_users:>10} {chunk:>8} {bare:>14,.0f} {rate:>17,.0f} {rate / bare:>6.2f}")
        assert metrics["num_users"] == num_users
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"peak CUDA memory allocated: {peak:.2f} GiB")


if __name__ == "__main__":
    main()

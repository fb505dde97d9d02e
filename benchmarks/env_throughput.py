"""User-steps per second of the simulated users: batched TorchRL core vs Gymnasium's vector API.

Runs, for each environment, in one process:
- the batched TorchRL env (`envs.make_env`) at each `--num-users`, stepping with
  `step_and_maybe_reset` as a collector does (resets included);
- `gymnasium.make_vec(..., vectorization_mode="vector_entry_point")` (the same core behind
  Gymnasium's VectorEnv API, numpy in and out) at `--vector-envs` users;
- `gymnasium.make_vec(..., vectorization_mode="sync")`, a SyncVectorEnv of single-user
  envs, at `--sync-envs` users: the reference the ratios are taken against.

Actions are drawn once up front (a policy's cost is not the env's). Target on CPU: the
batched env >= 50x the sync Gymnasium vector env per user-step.

    python benchmarks/env_throughput.py                      # CPU, 1k and 64k users
    python benchmarks/env_throughput.py --device cuda --num-users 1000000 --skip-gym
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import envs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batched_rate(name: str, num_users: int, device: torch.device, seconds: float) -> float:
    env = envs.make_env(name, num_envs=num_users, device=device, seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    if env.config.action_type == "item":
        action = torch.randint(0, env.config.num_items, (num_users,), generator=gen, device=device)
    else:
        action = torch.randn(num_users, env.config.embedding_dim, generator=gen, device=device)
    td = env.reset()

    def run(steps: int) -> None:
        nonlocal td
        for _ in range(steps):
            td["action"] = action
            _, td = env.step_and_maybe_reset(td)

    return _rate(run, num_users, seconds, lambda: _sync(device))


def gym_vector_rate(name: str, num_envs: int, mode: str, seconds: float) -> float:
    # SAME_STEP: a finished user is reset within its step, as in the batched core's loop
    # (Gymnasium's default, NEXT_STEP, would spend every other bandit step on a reset).
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    options = same_step if mode == "vector_entry_point" else {"vector_kwargs": same_step}
    vec = gym.make_vec(f"drpo_rl/{name}-v0", num_envs=num_envs, vectorization_mode=mode, **options)
    vec.action_space.seed(0)
    actions = [vec.action_space.sample() for _ in range(8)]
    vec.reset(seed=0)
    counter = [0]

    def run(steps: int) -> None:
        for _ in range(steps):
            vec.step(actions[counter[0] % len(actions)])
            counter[0] += 1

    rate = _rate(run, num_envs, seconds, lambda: None)
    vec.close()
    return rate


def _rate(run, users_per_step: int, seconds: float, sync) -> float:
    """User-steps per second of `run`, timed for about `seconds` after a warm-up."""
    run(3)
    sync()
    steps = 1
    while True:
        start = time.perf_counter()
        run(steps)
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or steps >= 1 << 20:
            return users_per_step * steps / elapsed
        steps = max(steps * 2, int(steps * seconds / max(elapsed, 1e-6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-users", type=int, nargs="+", default=[1_000, 65_536])
    parser.add_argument("--envs", nargs="+", default=["RecSimBanditDiscrete", "UserSession"])
    parser.add_argument("--vector-envs", type=int, default=4096)
    parser.add_argument("--sync-envs", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--skip-gym", action="store_true", help="batched env only")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} torch threads={torch.get_num_threads()} seconds={args.seconds}")
    for name in args.envs:
        print(f"\n== {name}")
        rates = {}
        for n in args.num_users:
            rates[f"batched {n} users ({device})"] = batched_rate(name, n, device, args.seconds)
        if not args.skip_gym:
            key = f"gymnasium vector_entry_point {args.vector_envs} users (cpu)"
            rates[key] = gym_vector_rate(name, args.vector_envs, "vector_entry_point", args.seconds)
            key = f"gymnasium sync vector {args.sync_envs} single envs (cpu)"
            rates[key] = gym_vector_rate(name, args.sync_envs, "sync", args.seconds)
        reference = rates[key] if not args.skip_gym else None
        for label, rate in rates.items():
            ratio = f"  {rate / reference:10.1f}x sync gym" if reference else ""
            print(f"{label:50s} {rate:14,.0f} user-steps/s{ratio}")
        if reference:
            slowest = min(rate for label, rate in rates.items() if label.startswith("batched"))
            verdict = "met" if slowest >= 50 * reference else "NOT met"
            print(f"target batched >= 50x sync gym vector: {verdict} ({slowest / reference:.0f}x)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

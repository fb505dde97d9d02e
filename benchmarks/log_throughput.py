"""Logging and sampling throughput of the offline-logs pipeline (not a test).

1. Logging: rows/s of ``generate_logs``' path (TorchRL Collector + behaviour mixture +
   ``LazyMemmapStorage`` on disk) against bare stepping of the same env with the same
   behaviour policy and batch (a plain loop of ``policy`` + ``env.step_and_maybe_reset``, no
   collector, nothing stored). Ratio = pipeline / bare; target >= 0.5 (collector and buffer
   cost at most as much as the env steps themselves).
2. Sampling: batches/s and rows/s of ``OfflineLogs.sample`` for batch sizes 320 and 32768
   from a buffer of ``--buffer-rows`` (default 1M) logged rows, default RandomSampler;
   ratio to indexing the same rows held in RAM as a plain TensorDict at random.
3. ``--generate-rows N``: wall time of ``generate_logs`` for N rows end to end (e.g.
   10_000_000 with ``--device cuda``).

Usage::

    python benchmarks/log_throughput.py [--device cpu|cuda] [--env RecSimBanditDiscrete]
        [--num-envs 4096] [--rows 262144] [--buffer-rows 1000000] [--generate-rows 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torchrl.data import ReplayBuffer

import envs
from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.data.behavior import BehaviorMixture
from drpo_rl.data.generate import LOG_KEYS, SESSION_KEYS, collect, make_collector
from drpo_rl.data.scenarios import scenario_weights
from drpo_rl.data.staging import StagedDataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make(args, seed=0):
    # The env as generate_logs builds it: the noiseless reward is one of the stored keys.
    env = envs.make_env(
        args.env,
        num_envs=args.num_envs,
        device=args.device,
        seed=seed,
        privileged=("latent_reward",),
    )
    policy = BehaviorMixture.from_weights(
        env,
        scenario_weights(args.scenario),
        generator=torch.Generator(device=args.device).manual_seed(seed + 1),
    )
    return env, policy


def bare_steps(args) -> float:
    """Rows/s of policy + env.step_and_maybe_reset in a plain loop (the reference)."""
    env, policy = _make(args)
    steps = max(1, args.rows // args.num_envs)
    td = env.reset()
    for _ in range(3):  # warm-up
        _, td = env.step_and_maybe_reset(policy(td))
    _sync(env.device)
    start = time.perf_counter()
    for _ in range(steps):
        _, td = env.step_and_maybe_reset(policy(td))
    _sync(env.device)
    return steps * args.num_envs / (time.perf_counter() - start)


def pipeline(args, root: Path) -> tuple[float, float]:
    """Rows/s of the logging path (collector batches -> log keys -> CPU -> memmap storage),
    and the collector's one-off set-up time in seconds (not in the rate)."""
    env, policy = _make(args)
    rows = max(1, args.rows // args.num_envs) * args.num_envs
    session = env.dynamics.max_length > 1  # the layout generate_logs uses for sessions
    keys = LOG_KEYS + (SESSION_KEYS if session else ())
    with StagedDataset(root / "pipeline") as staged:
        buffer = ReplayBuffer(storage=staged.make_storage(rows, ndim=2 if session else 1))
        start = time.perf_counter()
        collector = make_collector(env, policy, rows)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        for batch in collect(collector, rows, keys, session=session):
            buffer.extend(batch)
        elapsed = time.perf_counter() - start
        # not committed: the staging folder is removed on exit
    return rows / elapsed, setup


def sampling(args, root: Path) -> dict[int, tuple[float, float]]:
    path = root / "sampling"
    start = time.perf_counter()
    generate_logs(
        args.env,
        args.scenario,
        args.buffer_rows,
        path=path,
        seed=0,
        device=args.device,
        num_envs=args.num_envs,
        progress=False,
    )
    print(f"  (built the {args.buffer_rows:,}-row buffer in {time.perf_counter() - start:.1f} s)")
    # The reference: the same rows as plain tensors, flat (session logs index as [env, time]).
    in_ram = OfflineLogs(path)[:].clone().reshape(-1)
    out = {}
    for batch_size in (320, 32768):
        logs = OfflineLogs(path, batch_size=batch_size)
        reps = max(5, int(2e5 // batch_size))
        buffer_rate = _rate(logs.sample, reps)
        ram_rate = _rate(lambda size=batch_size: in_ram[torch.randint(len(in_ram), (size,))], reps)
        out[batch_size] = (buffer_rate, buffer_rate * batch_size, ram_rate)
    return out


def _rate(fn, reps: int) -> float:
    """Calls per second of ``fn`` (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--env", default="RecSimBanditDiscrete")
    parser.add_argument("--scenario", default="medium")
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=1 << 18, help="rows per logging run")
    parser.add_argument("--buffer-rows", type=int, default=1_000_000)
    parser.add_argument("--generate-rows", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="logging runs of each kind")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    args.device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"device={args.device} env={args.env} scenario={args.scenario} num_envs={args.num_envs} "
        f"torch threads={torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Interleaved repeats, best of each: robust to other load on the machine.
        bare = logged = 0.0
        setup = float("inf")
        for _ in range(args.repeats):
            bare = max(bare, bare_steps(args))
            rate, seconds = pipeline(args, root)
            logged, setup = max(logged, rate), min(setup, seconds)
        print(f"logging (rows/s, best of {args.repeats} interleaved runs):")
        print(f"  bare env + policy stepping   {bare:14,.0f}")
        print(f"  collector + memmap buffer    {logged:14,.0f}")
        print(f"  ratio pipeline / bare        {logged / bare:14.2f}   (target >= 0.5)")
        print(f"  (collector set-up, once per generate_logs call: {setup:.2f} s, not in the rate)")
        print("sampling from the logs (OfflineLogs.sample, default RandomSampler):")
        for batch_size, (batches, rows, ram) in sampling(args, root).items():
            print(
                f"  batch {batch_size:>6}: {batches:10,.1f} batches/s  {rows:14,.0f} rows/s"
                f"   ratio to random-indexing an in-RAM TensorDict {batches / ram:5.2f}"
            )
        if args.generate_rows:
            start = time.perf_counter()
            generate_logs(
                args.env,
                args.scenario,
                args.generate_rows,
                path=root / "big",
                seed=0,
                device=args.device,
                num_envs=args.num_envs,
            )
            elapsed = time.perf_counter() - start
            print(
                f"generate_logs {args.generate_rows:,} rows on {args.device}: {elapsed:.1f} s "
                f"({args.generate_rows / elapsed:,.0f} rows/s)"
            )


if __name__ == "__main__":
    main()

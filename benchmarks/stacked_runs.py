"""Runs x update-steps per second: runs stacked into one batched model vs one run at a time.

The default benchmark's training, on its own logs (``drpo-rl bench``'s default preset:
RecSimBandit, 20,000 logged rows of the ``medium`` scenario, batch 320, the paper's
2 x 128 networks), timed in one process for each algorithm:

- ``one-run path``: what the benchmark did for every run before stacking (and still does
  for ``--max-stack 1``): per step, ``buffer.sample()`` then ``Algorithm.update``;
- ``stack of K``: K runs (seeds 0..K-1) as one
  :class:`~drpo_rl.algorithms.stacked.StackedAlgorithm`; per step, every run's
  ``buffer.sample()``, stacked, then one batched ``update``.

Each row prints runs x steps per second and its ratio to the one-run path (a ratio, as the
timings of a shared machine drift). Sampling is included in both, as in training.

    python benchmarks/stacked_runs.py                       # drpo, stacks of 1, 8, 64
    python benchmarks/stacked_runs.py --algorithms drpo bc awr --steps 30
    python benchmarks/stacked_runs.py --compile             # also the compiled stacks
    python benchmarks/stacked_runs.py --device cuda --stacks 1 8 64 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch

from drpo_rl.algorithms.stacked import StackedAlgorithm
from drpo_rl.benchmark.presets import PRESETS
from drpo_rl.benchmark.training import prepare
from drpo_rl.models import PolicySpecs


def logged_rows(device: str):
    """The default preset's logs of ``medium``, seed 0, and the policy's specs."""
    from drpo_rl.data import generate_logs

    config = PRESETS["default"]
    path = tempfile.mkdtemp(prefix="stacked-runs-")
    logs = generate_logs(
        config.env_spec, "medium", config.log_samples, path=path, seed=0, progress=False
    )
    specs = PolicySpecs.from_env(config.env_spec.make(device=device))
    return logs[:].to(device), specs


def prepared(algorithm, rows, specs, runs, device):
    config = PRESETS["default"]
    return [
        prepare(
            algorithm,
            rows,
            specs,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=seed,
            device=torch.device(device),
            hparams={},
        )
        for seed in range(runs)
    ]


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def one_run_rate(algorithm, rows, specs, steps, device) -> float:
    """Runs x steps per second of the one-run path (one run, warmed up)."""
    ((algo, _, buffer),) = prepared(algorithm, rows, specs, 1, device)
    for _ in range(3):
        algo.update(buffer.sample())
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        algo.update(buffer.sample())
    _sync(device)
    return steps / (time.perf_counter() - start)


def stacked_rate(algorithm, rows, specs, runs, steps, device, compile_) -> float:
    """Runs x steps per second of a stack of ``runs`` (warmed up, compiled if asked)."""
    parts = prepared(algorithm, rows, specs, runs, device)
    stack = StackedAlgorithm([algo for algo, _, _ in parts], compile=compile_)
    buffers = [buffer for _, _, buffer in parts]

    def step():
        stack.update(torch.stack([buffer.sample() for buffer in buffers]))

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return runs * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["drpo"])
    parser.add_argument("--stacks", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per row")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time compiled stacks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    rows, specs = logged_rows(args.device)
    print(f"device {args.device}, {args.threads} thread(s), {args.steps} timed steps per row")
    print(f"{'algorithm':<10} {'path':<22} {'runs x steps/s':>15} {'vs one-run':>11}")
    for algorithm in args.algorithms:
        reference = one_run_rate(algorithm, rows, specs, args.steps, args.device)
        print(f"{algorithm:<10} {'one-run path':<22} {reference:>15.1f} {1.0:>10.2f}x")
        for compile_ in (False, True) if args.compile else (False,):
            for runs in args.stacks:
                label = f"stack of {runs}" + (" compiled" if compile_ else "")
                rate = stacked_rate(algorithm, rows, specs, runs, args.steps, args.device, compile_)
                print(f"{algorithm:<10} {label:<22} {rate:>15.1f} {rate / reference:>10.2f}x")


if __name__ == "__main__":
    main()

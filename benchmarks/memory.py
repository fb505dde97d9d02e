"""Peak memory of logging, sampling and online evaluation at scale (not a test).

Each case runs in a fresh child process (``python benchmarks/memory.py --case ...``), so
its peaks are its own. The child reports:

- ``peak_rss``: the kernel's high-water mark of resident memory (``VmHWM``; the same as
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` seen by the parent). It counts file pages
  mapped into the process, so a memmap that was just written or read counts while its
  pages sit in the page cache, although the kernel can drop them at any time.
- ``peak_anon``: the largest anonymous resident memory (``RssAnon``, sampled every 20 ms
  by a thread): the RAM the process itself holds, which the rows must not grow.

Cases:

- ``baseline``: imports and one small env (the reference every other case is compared to).
- ``logs-N``: ``generate_logs`` of N rows of ``--env`` under the medium scenario into a
  memmap dataset, then ``--sample-batches`` batches of 32768 rows sampled from the reopened
  dataset (RandomSampler over all N rows).
- ``eval-N``: ``evaluate`` of a Gaussian actor (128 units, 2 layers; embedding action) on
  N simulated users of ``RecSimBandit`` on the CPU, default chunking.
- ``cell``: one cell of the default benchmark (``medium``, ``drpo``, seed 0: 20k logged
  rows of ``RecSimBandit``, 200 updates, learning-curve and final evaluations).

``--items`` runs every case for each catalogue size (``num_items``) and prints, per case,
the ratio of its time and peak anonymous memory to those of the first size: what a larger
catalogue costs beyond its items x d embeddings.

Printed: each case's peaks, the ratio to the baseline, and for two log sizes the slope of
peak memory per million rows (what the rows cost in RAM).

Measured on the 2-core CPU dev machine (other work running), ``python benchmarks/memory.py
--log-rows 1000000 4000000 10000000 --eval-users 1000000``, RecSimBanditDiscrete, default
config: baseline 334 MiB RSS / 245 MiB anonymous; 1M users evaluated: 794 / 694 MiB (40 s);
logs of 1M / 4M / 10M rows: peak anonymous 484 / 485 / 533 MiB (+5.5 MiB per million rows,
the rows themselves take 159 MiB per million on disk), peak RSS 737 / 1219 / 2176 MiB
(grows like the file: the memmap's page-cache pages, reclaimable); 10M rows took 923 s.

Usage::

    python benchmarks/memory.py                                   # 1M and 10M rows, 1M users
    python benchmarks/memory.py --log-rows 1000000 4000000 --eval-users 1000000
    python benchmarks/memory.py --items 100 100000 --log-rows 1000000 --eval-users 100000 --cell
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE_BATCH = 32768


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class AnonPeak:
    """Samples this process's RssAnon in a daemon thread; ``peak`` in KiB."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak = _status_kib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, _status_kib("RssAnon"))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))
        return self.peak


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_case(case: str, args: argparse.Namespace) -> dict:
    """Runs one case in this process and returns its measurements (sizes in MiB)."""
    sampler = AnonPeak()
    import torch

    torch.set_num_threads(args.threads)
    import envs

    details: dict = {}
    start = time.perf_counter()
    if case == "baseline":
        import drpo_rl.data  # noqa: F401  (the imports every other case pays)
        import drpo_rl.evaluation.online  # noqa: F401

        envs.make_env(args.env, num_envs=1, seed=0, num_items=args.num_items)
    elif case.startswith("logs-"):
        from drpo_rl.data import OfflineLogs, generate_logs

        rows = int(case.split("-", 1)[1])
        root = Path(tempfile.mkdtemp(prefix="drpo_memory_", dir=args.tmp))
        try:
            spec = envs.EnvSpec(args.env, {"num_items": args.num_items})
            generate_logs(spec, "medium", rows, path=root / "logs", seed=0, progress=False)
            generated = time.perf_counter()
            logs = OfflineLogs(root / "logs", batch_size=SAMPLE_BATCH)
            checksum = 0.0
            for _ in range(args.sample_batches):
                checksum += float(logs.sample()["next", "reward"].sum())
            details = {
                "rows": rows,
                "disk_mib": _folder_bytes(root / "logs") / 2**20,
                "generate_s": generated - start,
                "sample_s": time.perf_counter() - generated,
                "sampled_rows": args.sample_batches * SAMPLE_BATCH,
                "mean_sampled_reward": checksum / (args.sample_batches * SAMPLE_BATCH),
            }
        finally:
            shutil.rmtree(root, ignore_errors=True)
    elif case.startswith("eval-"):
        from drpo_rl.evaluation import evaluate
        from drpo_rl.models import make_actor

        users = int(case.split("-", 1)[1])
        spec = envs.EnvSpec("RecSimBandit", {"num_items": args.num_items})
        policy = make_actor(spec.make(seed=0))
        metrics = evaluate(policy, spec, num_users=users, seed=0)
        details = {"users": metrics["num_users"], "reward": metrics["reward"]}
    elif case == "cell":
        from drpo_rl.benchmark import make_config, run_benchmark

        config = make_config(
            algorithms=("drpo",),
            scenarios=("medium",),
            seeds=(0,),
            references=(),
            env_overrides={"num_items": args.num_items},
        )
        root = Path(tempfile.mkdtemp(prefix="drpo_memory_", dir=args.tmp))
        try:
            report = run_benchmark(config, root, progress=False, echo=lambda *a: None)
            details = {"reward": report.records[0]["metrics"]["reward"]}
        finally:
            shutil.rmtree(root, ignore_errors=True)
    else:
        raise ValueError(f"unknown case {case!r}; valid: baseline, logs-<rows>, eval-<users>, cell")
    details["seconds"] = time.perf_counter() - start
    details["peak_anon_mib"] = sampler.stop() / 1024
    details["peak_rss_mib"] = _status_kib("VmHWM") / 1024
    return details


def run_child(case: str, args: argparse.Namespace) -> dict:
    """Runs ``case`` in a fresh interpreter; returns its report plus the parent's view."""
    command = [
        sys.executable,
        __file__,
        "--case",
        case,
        "--env",
        args.env,
        "--sample-batches",
        str(args.sample_batches),
        "--threads",
        str(args.threads),
        "--num-items",
        str(args.num_items),
    ]
    if args.tmp:
        command += ["--tmp", args.tmp]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: informative only when it grew.
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report["children_maxrss_mib"] = after / 1024 if after > before else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help="run one case in this process and print JSON")
    parser.add_argument("--log-rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--eval-users", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--env", default="RecSimBanditDiscrete")
    parser.add_argument("--sample-batches", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tmp", default=None, help="folder for the temporary datasets")
    parser.add_argument("--items", type=int, nargs="+", default=[100], help="catalogue sizes")
    parser.add_argument("--cell", action="store_true", help="also one default benchmark cell")
    parser.add_argument("--num-items", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return

    # Shortest first: the long log cases come last.
    cases = ["baseline"]
    cases += [f"eval-{n}" for n in args.eval_users]
    cases += ["cell"] if args.cell else []
    cases += [f"logs-{n}" for n in sorted(args.log_rows)]
    first: dict[str, dict] = {}
    for items in args.items:
        args.num_items = items
        print(f"== num_items={items:,}")
        reports = _run_cases(cases, args)
        for case, report in reports.items():
            reference = first.setdefault(case, report)
            if reference is not report:
                print(
                    f"{case:>16}: x{report['seconds'] / reference['seconds']:.2f} time, "
                    f"x{report['peak_anon_mib'] / reference['peak_anon_mib']:.2f} peak "
                    f"anonymous memory of num_items={args.items[0]:,}"
                )


def _run_cases(cases: list[str], args: argparse.Namespace) -> dict[str, dict]:
    reports = {}
    for case in cases:
        reports[case] = report = run_child(case, args)
        base = reports["baseline"]
        extra = {k: v for k, v in report.items() if not k.startswith(("peak", "children"))}
        print(
            f"{case:>16}: peak RSS {report['peak_rss_mib']:8.0f} MiB "
            f"(x{report['peak_rss_mib'] / base['peak_rss_mib']:.2f} baseline), "
            f"peak anonymous {report['peak_anon_mib']:8.0f} MiB "
            f"(x{report['peak_anon_mib'] / base['peak_anon_mib']:.2f}), "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()
            ),
            flush=True,
        )
    logs = sorted((r["rows"], r) for c, r in reports.items() if c.startswith("logs-"))
    if len(logs) >= 2:
        (n0, r0), (n1, r1) = logs[0], logs[-1]
        per_million = 1e6 / (n1 - n0)
        print(
            f"slope from {n0:,} to {n1:,} rows: peak anonymous "
            f"{(r1['peak_anon_mib'] - r0['peak_anon_mib']) * per_million:+.1f} MiB per million "
            f"rows, peak RSS {(r1['peak_rss_mib'] - r0['peak_rss_mib']) * per_million:+.1f} "
            f"MiB per million rows; dataset on disk "
            f"{(r1['disk_mib'] - r0['disk_mib']) * per_million:.1f} MiB per million rows"
        )
    return reports


if __name__ == "__main__":
    main()

"""Peak resident memory of ``load_interactions`` on a large CSV, against the chunk size.

Writes a CSV of ``--rows`` interactions (string user and item ids, a 0/1 reward, a
propensity, increasing timestamps; written in pieces, never whole), then loads it once per
``--chunk-sizes`` value, each load in a fresh Python process, and prints that process's
peak resident memory (sampled from ``/proc/self/status`` every 5 ms: all of it, the
anonymous part, the process's own, and the file-backed part, pages of the memory-mapped
dataset being written) and time. Memory bounded by the chunk size shows as a peak that
follows the chunk size and not the number of rows (the file-backed
pages do follow the rows: they are the dataset's page cache): compare ``--rows 1000000`` with
``--rows 10000000`` at one chunk size. The baseline row is the same process importing
drpo_rl.data and loading nothing.

    python benchmarks/load_interactions.py                     # 200,000 rows, quick
    python benchmarks/load_interactions.py --rows 10000000 --chunk-sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = """
import json, sys, threading, time
from drpo_rl.data import load_interactions

def status():
    fields = {}
    with open("/proc/self/status") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) / 1024
    return fields

peak = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
running = True

def sample():
    while running:
        for name, value in status().items():
            peak[name] = max(peak[name], value)
        time.sleep(0.005)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
source, out, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
rows = 0
if chunk:
    logs = load_interactions(source, out, chunk_size=chunk, columns={"propensity": "propensity"})
    rows = len(logs)
seconds = time.perf_counter() - start
running = False
sampler.join()
print(json.dumps({"rows": rows, "seconds": seconds, **peak}))
"""


def write_csv(path: Path, rows: int, users: int, items: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    piece = 500_000
    with open(path, "w") as file:
        file.write("user,item,reward,propensity,time\n")
        for start in range(0, rows, piece):
            n = min(piece, rows - start)
            user = rng.integers(0, users, n)
            item = rng.integers(0, items, n)
            reward = rng.integers(0, 2, n)
            propensity = rng.uniform(0.01, 1.0, n)
            stamp = 1_700_000_000 + start + np.arange(n)
            lines = [
                f"u{u},i{i},{r},{p:.4f},{t}\n"
                for u, i, r, p, t in zip(user, item, reward, propensity, stamp, strict=True)
            ]
            file.writelines(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "log.csv"
        start = time.perf_counter()
        write_csv(source, args.rows, args.users, args.items, args.seed)
        print(
            f"wrote {args.rows:,} rows ({source.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - start:.1f} s; {args.users:,} users, {args.items:,} items"
        )
        print(
            f"{'chunk size':>12} {'peak RSS':>9} {'anon':>7} {'file':>7} {'seconds':>8} "
            f"{'rows':>12}   (MiB; anon: the process's own memory, file: mapped pages "
            "of the dataset being written, page cache the kernel can reclaim)"
        )
        for chunk in [0, *args.chunk_sizes]:
            out = Path(tmp) / f"logs-{chunk}"
            result = subprocess.run(
                [sys.executable, "-c", _CHILD, str(source), str(out), str(chunk)],
                capture_output=True,
                text=True,
                check=True,
            )
            record = json.loads(result.stdout.strip().splitlines()[-1])
            label = "baseline" if chunk == 0 else f"{chunk:,}"
            print(
                f"{label:>12} {record['VmRSS']:>9.0f} {record['RssAnon']:>7.0f} "
                f"{record['RssFile']:>7.0f} {record['seconds']:>8.1f} {record['rows']:>12,}"
            )


if __name__ == "__main__":
    main()

"""Benchmark grids as Ray tasks: the records of the process pool; the pool needs no Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from drpo_rl.benchmark.grid import run_benchmark
from drpo_rl.benchmark.presets import make_config

REPO = Path(__file__).resolve().parents[2]
# Two learner cells, small enough for a test.
CELLS = {"algorithms": ["bc", "drpo"], "references": [], "steps": 5, "eval_users": 200}

# Run with `import ray` failing: the process pool runs the grid, the Ray backend explains.
WITHOUT_RAY = """
import json, sys
sys.modules["ray"] = None
from drpo_rl.benchmark.grid import run_benchmark
from drpo_rl.benchmark.presets import make_config
config = make_config("tiny", **json.loads(sys.argv[2]))
run_benchmark(config, sys.argv[1], workers=2, progress=False, echo=lambda line: None)
try:
    run_benchmark(config, sys.argv[1] + "-ray", progress=False, backend="ray")
except ImportError as err:
    print(err)
"""


def _without_timings(value):
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if "seconds" not in k and "per_second" not in k
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_a_ray_grid_gives_the_records_of_the_process_pool_which_needs_no_ray(tmp_path):
    ray = pytest.importorskip("ray")
    # The pool's grid runs meanwhile, in a process where Ray cannot be imported.
    pool = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_RAY, str(tmp_path / "pool"), json.dumps(CELLS)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    config = make_config("tiny", **CELLS)
    seen = []
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        report = run_benchmark(
            config, tmp_path / "ray", progress=False, backend="ray", echo=seen.append
        )
    finally:
        out, err = pool.communicate()
    # The Ray it started is shut down, and this process's signal handlers are as they were.
    assert not ray.is_initialized()
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert pool.returncode == 0, err
    assert "the Ray backend needs Ray: pip install 'drpo-rl[ray]'" in out
    assert sorted(k.algorithm for k in report.ran) == ["bc", "drpo"]
    expected = run_benchmark(config, tmp_path / "pool", progress=False, echo=seen.append)
    assert expected.ran == []  # every cell was in the pool's records: nothing re-ran
    assert _without_timings(report.records) == _without_timings(expected.records)


def test_bench_refuses_an_address_without_the_ray_backend(tmp_path, capsys):
    from drpo_rl.cli import main

    status = main(["bench", "--preset", "tiny", "--address", "auto", "--out", str(tmp_path)])
    assert status == 2
    assert "--address: only with --backend ray" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

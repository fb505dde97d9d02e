"""Launching a few gloo ranks from a test: each a ``python rank_programs.py`` process.

The ranks meet through a file rendezvous in the test's temporary folder (no port is
chosen, so parallel test runs cannot collide); every collective has a timeout, and the
processes are waited for with one, so that a failing test ends instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

PROGRAMS = Path(__file__).with_name("rank_programs.py")
REPO = Path(__file__).resolve().parents[2]
# Seconds a launched group may run in all before the test fails.
GROUP_TIMEOUT = 240


def launch_ranks(
    program: str, world: int, folder: Path, *args: str
) -> list[subprocess.CompletedProcess]:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    rendezvous = folder / f"rendezvous-{program}-{world}"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(PROGRAMS),
                program,
                str(rank),
                str(world),
                str(rendezvous),
                str(folder),
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=GROUP_TIMEOUT)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.fixture(scope="session")
def launch():
    """``launch(program, world, folder, *args)``: run ``rank_programs.py program`` on
    ``world`` ranks and return their ``CompletedProcess`` (rank order)."""
    return launch_ranks


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo process group of this process alone, for the learner's in-process tests."""
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp_path / 'rendezvous'}",
        rank=0,
        world_size=1,
        timeout=timedelta(seconds=60),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()

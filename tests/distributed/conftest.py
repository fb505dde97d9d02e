"""Launching a few gloo ranks from a test: each a ``python rank_programs.py`` process.

The ranks meet through a file rendezvous in the test's temporary folder (no port is
chosen, so parallel test runs cannot collide); every collective has a timeout, so that a
rank that fails ends the others instead of hanging them.
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
        # No wall-clock bound of its own: every collective of the ranks has a timeout, and a
        # group that hangs anyway is pytest's timeout.
        for process in processes:
            out, err = process.communicate()
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

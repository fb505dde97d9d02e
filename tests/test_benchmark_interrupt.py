"""SIGINT/SIGTERM stop ``drpo-rl bench`` cleanly, workers included, and it resumes exactly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import drpo_rl.benchmark.run as runner
from drpo_rl.benchmark import make_config, run_benchmark
from drpo_rl.cli import main

# 2 seeds x (3 references + bc + drpo): after the first record there are 9 runs left, a
# few seconds of work on two workers, so the signal always lands mid-benchmark.
SIZES = {"seeds": (0, 1), "steps": 60, "log_samples": 500, "eval_users": 200}
ARGS = [
    *("--preset", "tiny", "--seeds", "2", "--steps", "60"),
    *("--log-samples", "500", "--eval-users", "200", "--no-plots", "--no-progress"),
]
CONFIG = make_config("tiny", **SIZES)
TOTAL = 10
COMPARED = ("scenario", "algorithm", "seed", "kind", "metrics", "curve", "monitor", "hparams")
# `python -m drpo_rl.cli` with SIGINT raising KeyboardInterrupt whatever was inherited.
INTERACTIVE_CLI = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from drpo_rl.cli import main; sys.exit(main(sys.argv[1:]))"
)
MESSAGE = re.compile(
    r"drpo-rl bench: interrupted after (\d+) of 10 runs \(0 finished earlier\); "
    r"re-run with the same --out to resume"
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_benchmark(CONFIG, tmp_path_factory.mktemp("reference"), progress=False)


def compared(records):
    return [{field: record.get(field) for field in COMPARED} for record in records]


def resume_matches(out: Path, uninterrupted) -> list[str]:
    """Resume ``out`` in this process; its records must equal the uninterrupted run's."""
    messages: list[str] = []
    resumed = run_benchmark(CONFIG, out, progress=False, echo=messages.append)
    assert compared(resumed.records) == compared(uninterrupted.records)
    assert not list(out.rglob("*.ckpt.pt"))
    return messages


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now, found by each process's parent id in /proc/<n>/stat
    (every Linux has it; /proc/<pid>/task/*/children needs a kernel option)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (orphans are re-parented to an init that may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def interrupt_bench(out: Path, signum: int, *, whole_group: bool):
    """Start ``drpo-rl bench --workers 2``, signal it once a run is saved, wait for it.

    Returns its exit code, its stderr, and those of its child processes (seen while it
    ran) still running afterwards; any such survivor is then killed.
    """
    # A file, not a pipe: orphaned workers would hold a pipe open and hang the reading.
    stderr_path = out.parent / "stderr.txt"
    # As in a background job, nohup or some CI runners, where this test may run: SIGINT
    # ignored, which a child inherits. The child restores Python's handler, as an
    # interactive shell starting `drpo-rl bench` would; the command itself keeps an
    # ignored SIGINT ignored, on purpose.
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", INTERACTIVE_CLI, "bench", *ARGS, "--workers", "2"]
                + ["--out", out],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # Its own process group: a terminal's Ctrl-C signals the whole group.
                start_new_session=True,
            )
    finally:
        signal.signal(signal.SIGINT, ignored)
    seen: dict[int, str] = {}
    try:
        # No wall-clock bound: a benchmark that never finishes a run is pytest's timeout.
        while not list((out / "runs").glob("*/*/seed-*.json")):
            assert process.poll() is None, stderr_path.read_text()
            time.sleep(0.05)
        seen = {pid: command_line(pid) for pid in descendants(process.pid)}
        if whole_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        process.wait(timeout=60)
        # The resource tracker ends once its parent has gone; give it a moment (a bound on
        # the wait, not on speed: a survivor would still run after it).
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = {pid for pid in seen if running(pid)}
    finally:
        for pid in [process.pid, *seen]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    workers = [pid for pid, line in seen.items() if "multiprocessing.spawn" in line]
    assert len(workers) == 2, seen
    return process.returncode, stderr_path.read_text(), survivors


@pytest.mark.parametrize(
    ("signum", "code", "whole_group"),
    [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)],
    ids=["sigterm", "ctrl-c-to-the-group"],
)
def test_signal_stops_workers_cleanly_and_resume_gives_the_same_numbers(
    uninterrupted, tmp_path, signum, code, whole_group
):
    out = tmp_path / "out"
    returncode, stderr, survivors = interrupt_bench(out, signum, whole_group=whole_group)
    assert returncode == code, stderr
    assert survivors == set()
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and MESSAGE.fullmatch(lines[0]), stderr
    finished = int(MESSAGE.fullmatch(lines[0]).group(1))
    assert 1 <= finished < TOTAL
    assert finished == len(list((out / "runs").glob("*/*/seed-*.json")))
    messages = resume_matches(out, uninterrupted)
    assert messages[0].startswith(f"resuming {out}: skipping {finished} finished run(s): ")


def test_sigkill_of_the_parent_leaves_no_worker_running(tmp_path):
    # SIGKILL runs no clean-up in the parent: the workers (and the multiprocessing resource
    # tracker) must end by themselves rather than finish their runs as orphans.
    returncode, stderr, survivors = interrupt_bench(
        tmp_path / "out", signal.SIGKILL, whole_group=False
    )
    assert returncode == -signal.SIGKILL, stderr
    assert survivors == set()


def test_sigterm_without_workers_stops_cleanly_and_resumes(
    uninterrupted, tmp_path, monkeypatch, capsys
):
    calls, real = [], runner.evaluate

    # SIGTERM arrives during the 3rd online evaluation (bc-expert's first, after oracle's
    # and behaviour's): the single process is in the middle of a run. One run at a time
    # (--max-stack 1), so that the runs go in the grid's order.
    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", evaluate)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    argv = ["bench", *ARGS, "--workers", "1", "--max-stack", "1", "--out", str(out)]
    assert main(argv) == 143
    assert capsys.readouterr().err == (
        "drpo-rl bench: interrupted after 2 of 10 runs (0 finished earlier); "
        "re-run with the same --out to resume\n"
    )
    # The command put the handlers it replaced back.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    monkeypatch.undo()
    assert resume_matches(out, uninterrupted)[0].startswith(f"resuming {out}: skipping 2 ")

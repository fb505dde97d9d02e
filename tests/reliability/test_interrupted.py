"""A log generation killed part-way leaves nothing that loads, and the next run starts over.

tests/data covers kills of forked children stopped at a chosen point (a patched collector
that hangs after its first batch). Here the generation runs unpatched in a fresh
interpreter, as ``drpo-rl generate`` or a user's script would, and is killed with SIGKILL
while it is writing rows: whatever state the kill catches must not load as complete, and
the next run at the same path must give exactly the logs of an uninterrupted run.
"""

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from drpo_rl.data import OfflineLogs, generate_logs

SETTINGS = {"num_items": 30}
# Room for many batches; the child pauses (see below) after PAUSE_AFTER_BATCHES of them.
KILLED_ROWS = 200_000
PAUSE_AFTER_BATCHES = 2
RERUN_ROWS = 3_000


def _generate(path, num_samples):
    return generate_logs(
        "RecSimBanditDiscrete",
        "medium",
        num_samples,
        path=path,
        seed=3,
        num_envs=1000,
        progress=False,
        **SETTINGS,
    )


def _start_generation_in_a_fresh_interpreter(path, marker):
    # The kill must land while rows are being written, on any machine: after a set number
    # of batches the child says so in `marker` and stops right there (between two writes),
    # instead of the test guessing how long the writing takes.
    script = textwrap.dedent(
        f"""
        import pathlib, threading
        from torchrl.data import ReplayBuffer
        real_extend, written = ReplayBuffer.extend, []

        def extend(self, data, *args, **kwargs):
            index = real_extend(self, data, *args, **kwargs)
            written.append(data.batch_size.numel())
            if len(written) == {PAUSE_AFTER_BATCHES}:
                pathlib.Path({str(marker)!r}).write_text(str(sum(written)))
                threading.Event().wait()  # until the SIGKILL
            return index

        ReplayBuffer.extend = extend
        from drpo_rl.data import generate_logs
        generate_logs("RecSimBanditDiscrete", "medium", {KILLED_ROWS}, path={str(path)!r},
                      seed=3, num_envs=1000, progress=False, **{SETTINGS!r})
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait_for_rows_written(marker, child):
    """The rows the child wrote before it paused (a hang is left to pytest's timeout)."""
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the generation ended before the kill: {child.stderr.read()[-2000:]}")
        time.sleep(0.1)
    return int(marker.read_text())


@pytest.fixture(scope="module")
def killed_generation(tmp_path_factory):
    """A folder where a generation was SIGKILLed between two batches of rows."""
    parent = tmp_path_factory.mktemp("killed")
    marker = tmp_path_factory.mktemp("marker") / "paused"
    child = _start_generation_in_a_fresh_interpreter(parent / "logs", marker)
    try:
        rows = _wait_for_rows_written(marker, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert 0 < rows < KILLED_ROWS
    (staging,) = parent.iterdir()
    assert staging.name.startswith(".logs.partial-")
    assert any(f.suffix == ".memmap" for f in (staging / "storage").iterdir())
    return parent, staging


def test_killed_generation_leaves_nothing_that_loads(killed_generation):
    parent, staging = killed_generation
    assert sorted(os.listdir(parent)) == [staging.name]  # only the hidden staging folder
    assert not (parent / "logs").exists()
    assert not OfflineLogs.is_complete(parent / "logs")
    assert not OfflineLogs.is_complete(staging)  # not even when pointed at directly
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OfflineLogs(parent / "logs")
    with pytest.raises(FileNotFoundError, match="no complete dataset"):
        OfflineLogs(staging)


def test_next_run_starts_again_and_equals_an_uninterrupted_run(killed_generation, tmp_path):
    parent, staging = killed_generation
    logs = _generate(parent / "logs", RERUN_ROWS)
    assert sorted(os.listdir(parent)) == ["logs"]  # the dead writer's folder is gone
    assert len(logs) == RERUN_ROWS and logs.metadata["num_samples"] == RERUN_ROWS
    reference = _generate(tmp_path / "logs", RERUN_ROWS)
    got, want = logs[:], reference[:]
    assert set(got.keys(True, True)) == set(want.keys(True, True))
    for key in want.keys(True, True):
        assert torch.equal(got[key], want[key]), key


def test_next_run_says_it_starts_again(tmp_path, caplog, capfd):
    fake_dead_pid = 2**22 + 12345  # above Linux's pid_max default: never a live process
    staging = tmp_path / f".logs.partial-{fake_dead_pid}-0123abcd"
    (staging / "storage").mkdir(parents=True)
    with caplog.at_level(logging.INFO):
        _generate(tmp_path / "logs", 500)
    assert not staging.exists()
    said = caplog.text + "".join(capfd.readouterr())
    assert re.search(r"interrupted|unfinished|incomplete|abandoned", said, re.IGNORECASE), said

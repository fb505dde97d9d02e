"""Failures that are clear and lose nothing (issue 16, items 5, 6 and 10).

A full disk is a message naming the path and the bytes, not a SIGBUS; every expected error
of the suite reaches the command line as one line and exit status 2 (the traceback only with
``--debug``); two runs never write one folder at once, and the second says who is in its way.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict

import drpo_rl.data.staging as staging
from drpo_rl.benchmark import make_config, run_benchmark
from drpo_rl.benchmark.run import checkpoint_settings
from drpo_rl.benchmark.store import BenchmarkFolderError, ResultStore, RunKey
from drpo_rl.cli import main
from drpo_rl.data import OfflineLogs
from envs.common.files import DiskFullError, write_atomic
from envs.common.locks import FolderBusyError, exclusive_lock
from envs.common.tables import TableError
from envs.fitted import FitSettings, load_or_fit

ROWS = 64
# Bytes of _data()'s memmap files: observation 64 x 4 float32, action int64, reward float32.
NEEDED = ROWS * (4 * 4 + 8 + 4)


def _data(rows=ROWS):
    return TensorDict(
        {
            "observation": torch.randn(rows, 4),
            "action": torch.arange(rows),
            ("next", "reward"): torch.rand(rows, 1),
        },
        batch_size=[rows],
    )


def _nothing_left(parent, name="logs"):
    assert not (parent / name).exists()
    assert not OfflineLogs.is_complete(parent / name)
    assert sorted(os.listdir(parent)) == []  # no staging folder, no lock file


# ------------------------------------------------------------------------ 5. disk full
def test_too_little_free_space_is_refused_before_any_row_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "free_bytes", lambda folder: 1000)
    with pytest.raises(DiskFullError) as caught:
        OfflineLogs.from_tensordict(_data(), tmp_path / "logs")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/.logs.partial-")
    assert message.endswith(
        f": not enough disk space: needs {NEEDED:,} bytes, 1,000 free; free some space or "
        "write elsewhere"
    )
    assert caught.value.errno == errno.ENOSPC and caught.value.needed == NEEDED
    _nothing_left(tmp_path)


def _no_space(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "where, patched, message",
    [
        # Reserving the memmap files' blocks: the error says how much was needed.
        (os, "posix_fallocate", rf"\(No space left on device\): needs {NEEDED:,} b"),
        # Flushing the finished files: the error names the dataset.
        (staging, "fsync_tree", r"^{path}: not enough disk space \(No space left on device\)"),
    ],
    ids=["reserving", "finishing"],
)
def test_a_full_disk_while_writing_is_a_clear_error(tmp_path, monkeypatch, where, patched, message):
    monkeypatch.setattr(where, patched, _no_space)
    with pytest.raises(DiskFullError, match=message.replace("{path}", str(tmp_path / "logs"))):
        OfflineLogs.from_tensordict(_data(), tmp_path / "logs")
    _nothing_left(tmp_path)


def test_the_memmap_files_are_allocated_not_sparse(tmp_path):
    # Sparse files are what turn a full disk into SIGBUS in the middle of the rows.
    OfflineLogs.from_tensordict(_data(), tmp_path / "logs")
    for path in (tmp_path / "logs" / "storage").rglob("*.memmap"):
        assert path.stat().st_blocks * 512 >= path.stat().st_size, path


def test_write_atomic_names_the_file_on_a_full_disk(tmp_path):
    def half(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=rf"^{tmp_path / 'a.json'}: not enough disk space"):
        write_atomic(tmp_path / "a.json", half)
    assert os.listdir(tmp_path) == []


def test_generate_on_a_full_disk_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(staging, "free_bytes", lambda folder: 10)
    out = tmp_path / "logs"
    code = main(["generate", str(out), "--num-samples", "200", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("drpo-rl generate: error: ")
    assert "not enough disk space: needs " in err and ", 10 free;" in err
    _nothing_left(tmp_path)


# --------------------------------------------------------------- 6. one line, exit 2
def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "free_bytes", lambda folder: 10)
    args = ["generate", str(tmp_path / "logs"), "--num-samples", "200", "--no-progress"]
    with pytest.raises(DiskFullError):
        main([*args, "--debug"])
    with pytest.raises(DiskFullError):
        main(["--debug", *args])


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    config = make_config("tiny", algorithms=("bc",), references=(), steps=3)
    run_benchmark(config, out, progress=False, echo=lambda *args: None)
    return out


@pytest.mark.parametrize(
    "write, expected",
    [
        (lambda p: p.write_bytes(b"not a zip file"), "not a readable policy weights file"),
        (lambda p: torch.save({"w": torch.ones(3)}, p), "does not fit a 'bc' policy"),
        (lambda p: torch.save([torch.ones(3)], p), "expected a policy state_dict"),
    ],
    ids=["garbage", "other-network", "a-list"],
)
def test_evaluate_a_bad_pt_is_one_line(bench_folder, tmp_path, capsys, write, expected):
    # A copy of the folder: the module's folder stays intact for the other cases.
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(bench_folder), str(out)], check=True)
    weights = out / "runs" / "medium" / "bc" / "seed-0.pt"
    write(weights)
    assert main(["evaluate", str(weights.with_suffix(".json")), "--num-users", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"drpo-rl evaluate: error: {weights}: {expected}")


def test_a_checkpoint_with_an_invalid_state_names_its_file(tmp_path):
    config = make_config("tiny", algorithms=("bc",), references=(), steps=3)
    key = RunKey("medium", "bc", 0)
    store = ResultStore(tmp_path / "out")
    store.check_settings(config.run_settings())
    store.save_checkpoint(key, {"step": 1}, checkpoint_settings(config, key))
    with pytest.raises(BenchmarkFolderError) as caught:
        run_benchmark(config, tmp_path / "out", progress=False, echo=lambda *args: None)
    assert str(caught.value).startswith(f"{store.checkpoint_path(key)}: training state lacks ")
    assert str(caught.value).endswith("; delete it to start the run again")


def test_a_corrupted_fit_cache_is_rebuilt_and_said(tmp_path, caplog):
    ratings = tmp_path / "u.data"
    ratings.write_text(
        "\n".join(
            f"{u}\t{100 + i}\t{1 + (u * i) % 5}\t{1000 + i}" for u in range(1, 9) for i in range(6)
        )
    )
    settings = FitSettings(embedding_dim=3, steps=5)
    first = load_or_fit(ratings, settings=settings, cache_dir=tmp_path / "cache")
    (meta,) = (tmp_path / "cache").glob("u-*.json")
    for damage in ("[1, 2]", json.dumps({**json.loads(meta.read_text()), "delta": "x"})):
        meta.write_text(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="envs.fit_cache"):
            again = load_or_fit(ratings, settings=settings, cache_dir=tmp_path / "cache")
        assert "is damaged" in caplog.text and "fitting the ratings again" in caplog.text
        torch.testing.assert_close(again.users, first.users)
        assert isinstance(json.loads(meta.read_text()), dict)  # replaced


def test_read_json_refuses_a_non_object_where_an_object_is_needed(tmp_path):
    data = OfflineLogs.from_tensordict(_data(), tmp_path / "logs")
    (data.root / "metadata.json").write_text("[1, 2, 3]")
    with pytest.raises(
        ValueError, match=r"metadata.json: expected a JSON object, got a JSON array"
    ):
        OfflineLogs(data.root)


def test_bench_reports_a_folder_error_as_one_line(bench_folder, tmp_path, capsys):
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(bench_folder), str(out)], check=True)
    (out / "benchmark.json").write_text("[]")
    args = ["bench", "--preset", "tiny", "--algorithms", "bc", "--references", "", "--steps", "3"]
    assert main([*args, "--no-plots", "--no-progress", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"drpo-rl bench: error: {out / 'benchmark.json'}: expected a JSON object, got a JSON "
        "array\n"
    )


# ------------------------------------------------------------------------ 10. locks
def test_a_second_bench_on_the_same_out_says_who_holds_it(tmp_path, capsys):
    out = tmp_path / "out"
    with exclusive_lock(out / ".lock", what="held by this test"):
        args = ["bench", "--preset", "tiny", "--steps", "3", "--no-plots", "--no-progress"]
        assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"drpo-rl bench: error: output folder {out} is in use by process ")
    assert f"process {os.getpid()} on " in err
    assert err.endswith("; wait for it to finish (--wait) or use another --out folder\n")
    assert sorted(os.listdir(out)) == []  # nothing written, the lock file removed


def test_a_second_writer_of_a_dataset_is_refused_and_the_first_finishes(tmp_path):
    with staging.StagedDataset(tmp_path / "logs") as first:
        with pytest.raises(FolderBusyError, match=rf"^dataset {tmp_path / 'logs'} is in use by"):
            OfflineLogs.from_tensordict(_data(), tmp_path / "logs")
        storage = first.make_storage(ROWS)
        from torchrl.data import ReplayBuffer

        ReplayBuffer(storage=storage).extend(_data())
        first.commit(storage, {})
    assert len(OfflineLogs(tmp_path / "logs")) == ROWS
    assert sorted(os.listdir(tmp_path)) == ["logs"]


HOLDER = """
import sys
from envs.common.locks import exclusive_lock
with exclusive_lock(sys.argv[1], what="x"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_wait_blocks_until_the_holder_releases(tmp_path):
    lock = tmp_path / ".lock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(FolderBusyError, match=rf"is in use by process {holder.pid} on "):
            with exclusive_lock(lock, what="x"):
                pass
        told = []

        def release(who):
            told.append(who)
            holder.stdin.close()  # the holder leaves its block: the wait below ends

        with exclusive_lock(lock, what="x", wait=True, on_wait=release):
            assert holder.wait(timeout=120) == 0
        assert told and told[0].startswith(f"process {holder.pid} on ")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        holder.stdout.close()
    assert not lock.exists()


@pytest.mark.parametrize(
    "error",
    [
        DiskFullError("/data/logs", needed=5_000, free=10, reason="No space left on device"),
        TableError("u.data", "expected a finite number, got 'x'", line=3, column="rating"),
        FolderBusyError("output folder out is in use by process 1"),
        BenchmarkFolderError("out/benchmark.json: made with other settings"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_raised_in_a_worker_reach_the_parent_intact(error):
    # A benchmark worker's exception comes back pickled; a TableError or a DiskFullError
    # with keyword arguments would otherwise fail to unpickle and hide the message.
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert vars(again) == vars(error)

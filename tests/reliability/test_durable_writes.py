"""Files are durable and never half-written: fsync before a dataset's COMPLETE marker, the
shared atomic writer, the fit cache's temporary files, benchmark figures."""

import json
import os
import time
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from tensordict import TensorDict

import envs.common.files as files
from drpo_rl.benchmark import store
from drpo_rl.benchmark.plots import plot_all, plot_rewards
from drpo_rl.data import OfflineLogs
from envs import fit_cache
from envs.fit_cache import load_or_fit
from envs.fitting import FitSettings

DEAD_PID = 2**22 + 4321  # above Linux's default pid_max: no process has it


def _logs(rows: int = 16) -> TensorDict:
    return TensorDict(
        {
            "observation": torch.randn(rows, 3),
            "action": torch.arange(rows),
            ("next", "reward"): torch.rand(rows, 1),
            ("next", "done"): torch.ones(rows, 1, dtype=torch.bool),
        },
        batch_size=[rows],
    )


def _record_fsyncs(monkeypatch, root: Path) -> list[tuple[str, bool]]:
    """Patches os.fsync to log (path synced, whether a COMPLETE marker existed then)."""
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls.append((path, any(root.rglob("COMPLETE"))))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _first_staged_sync(calls, relative: Path) -> bool | None:
    """Whether COMPLETE existed when ``relative`` (a path inside the dataset) was first
    fsync'ed in the staging folder (a hidden sibling renamed afterwards); None: never."""
    for synced, marker_existed in calls:
        parts = Path(synced).parts
        staged = [k for k, part in enumerate(parts) if part.startswith(".logs.partial-")]
        if staged and Path(*parts[staged[0] + 1 :]) == relative:
            return marker_existed
    return None


def test_every_storage_file_is_fsynced_before_the_complete_marker(tmp_path, monkeypatch):
    root = tmp_path.resolve()
    calls = _record_fsyncs(monkeypatch, root)
    logs = OfflineLogs.from_tensordict(_logs(), root / "logs", {"source": "test"})
    storage = logs.root / "storage"
    written = [*storage.rglob("*"), storage]
    assert sum(p.suffix == ".memmap" for p in written) == 4  # 4 keys, 4 tensor files
    for path in written:
        relative = path.relative_to(logs.root)
        assert _first_staged_sync(calls, relative) is False, relative
    # Then the rename of the finished folder is made durable.
    assert calls[-1] == (str(root), True)


def test_generate_logs_fsyncs_storage_before_the_marker(tmp_path, monkeypatch):
    from drpo_rl.data import generate_logs

    root = tmp_path.resolve()
    calls = _record_fsyncs(monkeypatch, root)
    logs = generate_logs(
        "RecSimBanditDiscrete",
        "medium",
        64,
        path=root / "logs",
        seed=0,
        num_envs=8,
        num_items=10,
        embedding_dim=4,
        progress=False,
    )
    memmaps = [p.relative_to(logs.root) for p in logs.root.rglob("*.memmap")]
    assert len(memmaps) >= 8
    assert all(_first_staged_sync(calls, relative) is False for relative in memmaps)


def test_write_atomic_fsyncs_before_the_rename_and_keeps_the_old_file_on_error(
    tmp_path, monkeypatch
):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    target = tmp_path / "a.bin"
    files.write_atomic(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"new"
    assert events == ["fsync", "replace", "fsync"]  # file, rename, folder

    def fails(tmp):
        tmp.write_bytes(b"ha")
        raise KeyboardInterrupt  # an interrupt, not only an exception, cleans up

    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, fails)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_store_writers_use_the_shared_writer(tmp_path, monkeypatch):
    used = []
    real = files.write_atomic
    spy = lambda p, w: (used.append(Path(p).name), real(p, w))  # noqa: E731
    monkeypatch.setattr(store, "write_atomic", spy)  # torch files
    monkeypatch.setattr(files, "write_atomic", spy)  # JSON, through files.write_json
    key = store.RunKey("medium", "bc", 0)
    results = store.ResultStore(tmp_path)
    results.save_policy(key, {"w": torch.ones(2)})
    results.save_checkpoint(key, {"step": 1}, {"steps": 2})
    results.save(key, {"metrics": {"reward": 1.0}})
    assert used == ["seed-0.pt", "seed-0.ckpt.pt", "seed-0.json"]
    assert json.loads(results.path(key).read_text()) == {
        "metrics": {"reward": 1.0},
        "run": "medium/bc/seed-0",
        "settings_sha256": None,
    }
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- benchmark figures
RECORDS = [
    {"scenario": "medium", "algorithm": a, "seed": s, "metrics": {"reward": r + s}}
    for a, r in (("bc", 0.2), ("drpo", 0.5))
    for s in (0, 1)
]


def test_plot_is_a_complete_png_under_its_name(tmp_path):
    path = plot_rewards(RECORDS, tmp_path / "reward.png")
    assert path == tmp_path / "reward.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reward.png"]
    assert [p.name for p in plot_all(RECORDS, tmp_path)] == ["reward.png"]


def test_interrupted_plot_leaves_the_previous_figure(tmp_path, monkeypatch):
    previous = plot_rewards(RECORDS, tmp_path / "reward.png").read_bytes()
    real_savefig = Figure.savefig

    def interrupted(self, fname, **kwargs):
        real_savefig(self, fname, **kwargs)
        with open(fname, "r+b") as file:  # what a kill mid-write leaves
            file.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plot_rewards(RECORDS[:2], tmp_path / "reward.png")
    assert (tmp_path / "reward.png").read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reward.png"]


# ------------------------------------------------------------- fit cache temporaries
SETTINGS = FitSettings(embedding_dim=3, steps=20, holdout_fraction=0.0)


@pytest.fixture
def ratings_file(tmp_path):
    path = tmp_path / "data" / "u.data"
    path.parent.mkdir()
    path.write_text(
        "".join(f"{u}\t{i}\t{1 + (u * i) % 5}\t{u + i}\n" for u in range(6) for i in range(4))
    )
    return path


def test_fit_cache_removes_stale_temporaries_of_its_entry(ratings_file, tmp_path):
    cache = tmp_path / "cache"
    load_or_fit(ratings_file, settings=SETTINGS, cache_dir=cache)
    (tensors,) = cache.glob("u-*.pt")
    meta = tensors.with_suffix(".json")

    def temporary(target: Path, writer: str) -> Path:  # as write_atomic names them
        return target.with_name(f".{target.name}.{writer}-0123abcd.tmp")

    tensors.unlink()  # the entry must be written again
    dead = [temporary(tensors, str(DEAD_PID)), temporary(meta, str(DEAD_PID))]
    live_old = temporary(tensors, str(os.getppid()))
    live_new = temporary(meta, str(os.getppid()))
    other_entry = temporary(cache / "u-0123456789abcdef.pt", str(DEAD_PID))
    not_ours = temporary(tensors, "notapid")
    for path in (*dead, live_old, live_new, other_entry, not_ours):
        path.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3600
    os.utime(live_old, (an_hour_ago, an_hour_ago))  # pid may have been reused
    os.utime(live_new, (time.time() + 3600,) * 2)  # a live writer, still at it

    load_or_fit(ratings_file, settings=SETTINGS, cache_dir=cache)

    assert tensors.is_file() and meta.is_file()
    left = sorted(p.name for p in cache.glob(".*.tmp"))
    assert left == sorted([live_new.name, other_entry.name, not_ours.name])


def test_fit_cache_leaves_no_temporary_when_a_write_fails(ratings_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def disk_full(obj, f):
        Path(f).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fit_cache.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        load_or_fit(ratings_file, settings=SETTINGS, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == []
    monkeypatch.undo()
    fit = load_or_fit(ratings_file, settings=SETTINGS, cache_dir=cache)
    assert fit.users.shape == (6, 3)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".pt"]


def test_benchmark_rerun_removes_temporaries_of_killed_writers(tmp_path):
    from drpo_rl.benchmark import make_config, run_benchmark

    config = make_config("tiny", algorithms=("bc",), references=(), steps=2, curve_points=1)
    first = run_benchmark(config, tmp_path, progress=False, echo=lambda *_: None)
    # What a worker killed inside write_atomic leaves: hidden temporaries beside the files.
    run_dir = tmp_path / "runs" / "medium" / "bc"
    planted = [run_dir / ".seed-0.json.0a1b.tmp", run_dir / ".seed-0.ckpt.pt.2c3d.tmp"]
    for path in planted:
        path.write_text("half")
    again = run_benchmark(config, tmp_path, progress=False, echo=lambda *_: None)
    assert not any(path.exists() for path in planted)
    assert again.ran == [] and again.records == first.records


# Where a rename may appear: the one atomic writer, and the dataset folder's own rename
# (a folder, fsync'ed as a tree before and its parent after).
_RENAMES_ALLOWED = {"envs/common/files.py", "drpo_rl/data/staging.py"}


def test_every_write_then_rename_goes_through_write_atomic():
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("drpo_rl", "envs", "examples"):
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for needle in ("os.replace(", "os.rename(", ".rename(", "shutil.move("):
                if needle in text and str(path.relative_to(root)) not in _RENAMES_ALLOWED:
                    found.append(f"{path.relative_to(root)}: {needle}")
    assert found == []

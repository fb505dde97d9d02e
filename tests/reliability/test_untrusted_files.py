"""Files from elsewhere are data, never code: a tampered file is refused, not executed.

Every file the suite reads back is one of: JSON (dataset metadata, benchmark records, fit
settings), a memory-mapped tensor (dataset rows), or a tensor file read with
``torch.load(weights_only=True)`` (fit caches, trained policy weights). Each test plants a
pickle whose unpickling would create a marker folder where one of those files is expected
(or beside it, where a loader might pick it up), loads as a user would, and checks that the
load fails with an error naming the problem and that the marker was never created.

Where this suite's own default (``filterwarnings = error``) would stop a pickle load that a
user's session lets through (TensorDict's ``FutureWarning`` before it unpickles), the load
runs with that warning ignored, as in a user's script.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import warnings

import pytest
import torch
from tensordict import TensorDict

from drpo_rl.benchmark.policies import load_trained_run
from drpo_rl.data import OfflineLogs
from envs.fitted import FitSettings, load_or_fit


class MarkerPayload:
    """Unpickling this object calls ``os.mkdir(marker)``: the proof of code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def pickle_payload(marker) -> bytes:
    # protocol 2: what torch.save writes, so torch.load's reader takes it as its own
    return pickle.dumps({"data": MarkerPayload(marker)}, protocol=2)


def torch_payload(path, marker) -> None:
    """A genuine ``torch.save`` zip file whose pickle holds the payload."""
    torch.save({"users": MarkerPayload(marker)}, path)


# torch's weights-only reader refuses with UnpicklingError; a loader may re-raise it as a
# ValueError naming its file.
WEIGHTS_REFUSED = (pickle.UnpicklingError, ValueError)
WEIGHTS_REFUSED_MESSAGE = r"Weights only load failed|weights_only|\.pt"


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "the planted pickle was executed"


@contextlib.contextmanager
def user_session_warnings():
    """Warnings as a user's script sees them: TensorDict's pickle FutureWarning shown, not
    raised (pytest's ``filterwarnings = error`` would stop the load before it unpickles)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def small_logs(path):
    data = TensorDict(
        {"observation": torch.randn(64, 3), ("next", "reward"): torch.rand(64, 1)}, [64]
    )
    return OfflineLogs.from_tensordict(data, path, {"source": "test"})


# ------------------------------------------------------------------------ offline logs
def test_logs_with_a_planted_pickle_entry_are_refused(tmp_path, marker):
    small_logs(tmp_path / "logs")
    storage = tmp_path / "logs" / "storage"
    # TensorDict's own layout for a non-tensor entry: a sub-folder with a pickle sidecar.
    meta = json.loads((storage / "meta.json").read_text())
    meta["extra"] = {"type": "NonTensorData"}
    (storage / "meta.json").write_text(json.dumps(meta))
    (storage / "extra").mkdir()
    (storage / "extra" / "meta.json").write_text(
        json.dumps(
            {
                "_type": "<class 'tensordict.tensorclass.NonTensorData'>",
                "_is_non_tensor": True,
                "_metadata": None,
            }
        )
    )
    (storage / "extra" / "other.pickle").write_bytes(pickle_payload(marker))
    with user_session_warnings(), pytest.raises(ValueError, match="extra.*pickle"):
        OfflineLogs(tmp_path / "logs")
    # the marker fixture checks that the pickle never ran


def test_logs_with_a_stray_pickle_file_are_refused(tmp_path, marker):
    small_logs(tmp_path / "logs")
    stray = tmp_path / "logs" / "storage" / "next" / "other.pickle"
    stray.write_bytes(pickle_payload(marker))
    with user_session_warnings(), pytest.raises(ValueError, match="other.pickle"):
        OfflineLogs(tmp_path / "logs")


def test_logs_with_a_short_pickle_in_place_of_a_tensor_file_are_refused(tmp_path, marker):
    small_logs(tmp_path / "logs")
    tensor_file = tmp_path / "logs" / "storage" / "observation.memmap"
    payload = pickle_payload(marker)
    size = tensor_file.stat().st_size
    assert len(payload) < size  # a short file: the stored shape no longer fits
    tensor_file.write_bytes(payload)
    with pytest.raises(ValueError, match="observation.memmap"):
        OfflineLogs(tmp_path / "logs")[:]
    assert tensor_file.stat().st_size == len(payload), "loading rewrote one of the dataset's files"


def test_logs_with_a_same_size_pickle_in_place_of_a_tensor_are_refused_unrun(tmp_path, marker):
    # A memmap is raw bytes, never unpickled; and the recorded checksum tells the change.
    small_logs(tmp_path / "logs")
    tensor_file = tmp_path / "logs" / "storage" / "observation.memmap"
    size = tensor_file.stat().st_size
    payload = pickle_payload(marker)
    tensor_file.write_bytes(payload.ljust(size, b"\0")[:size])
    with pytest.raises(ValueError, match="observation.memmap: its bytes changed"):
        OfflineLogs(tmp_path / "logs")
    assert not marker.exists()


def test_logs_metadata_replaced_by_a_pickle_is_not_executed(tmp_path, marker):
    small_logs(tmp_path / "logs")
    (tmp_path / "logs" / "metadata.json").write_bytes(pickle_payload(marker))
    with pytest.raises(ValueError):  # json.JSONDecodeError / UnicodeDecodeError
        OfflineLogs(tmp_path / "logs")


def test_logs_metadata_that_is_not_json_names_the_file(tmp_path):
    small_logs(tmp_path / "logs")
    (tmp_path / "logs" / "metadata.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(ValueError, match="metadata.json"):
        OfflineLogs(tmp_path / "logs")


# ------------------------------------------------------------------- fitted-env cache
def tiny_ratings(path):
    rows = [
        f"{u}\t{100 + i}\t{1 + (u * i) % 5}\t{1000 + u * 10 + i}"
        for u in range(1, 13)
        for i in range(8)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("form", ["raw pickle", "torch.save zip"])
def test_fit_cache_with_a_planted_pickle_is_not_run_but_rebuilt(tmp_path, marker, form, caplog):
    ratings = tiny_ratings(tmp_path / "u.data")
    settings = FitSettings(embedding_dim=3, steps=5)
    cache = tmp_path / "cache"
    first = load_or_fit(ratings, settings=settings, cache_dir=cache)
    (tensors_file,) = cache.glob("u-*.pt")
    genuine = tensors_file.read_bytes()
    if form == "raw pickle":
        tensors_file.write_bytes(pickle_payload(marker))
    else:
        torch_payload(tensors_file, marker)
    with caplog.at_level(logging.WARNING, logger="envs.fit_cache"):
        again = load_or_fit(ratings, settings=settings, cache_dir=cache)
    assert f"the fit cache entry {tensors_file.with_suffix('')} is damaged" in caplog.text
    assert "fitting the ratings again and replacing it" in caplog.text
    torch.testing.assert_close(again.users, first.users)
    assert tensors_file.read_bytes() != pickle_payload(marker)  # replaced by a genuine entry
    rebuilt = torch.load(tensors_file, weights_only=True)
    assert rebuilt.keys() == torch.load(io.BytesIO(genuine), weights_only=True).keys()


# --------------------------------------------------------------- benchmark policy weights
def planted_run(root, weights_writer):
    (root / "benchmark.json").write_text(
        json.dumps(
            {"env": "RecSimBanditDiscrete", "env_overrides": {"num_items": 20}, "eval_users": 8}
        )
    )
    run = root / "runs" / "medium" / "bc" / "seed-0.json"
    run.parent.mkdir(parents=True)
    settings = json.loads((root / "benchmark.json").read_text())
    digest = hashlib.sha256(
        json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    record = {"algorithm": "bc", "hparams": {"num_cells": 8}, "seed": 0, "metrics": {}}
    run.write_text(json.dumps({**record, "run": "medium/bc/seed-0", "settings_sha256": digest}))
    weights_writer(run.with_suffix(".pt"))
    return run


def test_trained_run_weights_with_a_planted_pickle_are_refused(tmp_path, marker):
    run = planted_run(tmp_path, lambda path: torch_payload(path, marker))
    with pytest.raises(WEIGHTS_REFUSED, match=WEIGHTS_REFUSED_MESSAGE):
        load_trained_run(run)


def test_trained_run_record_replaced_by_a_pickle_is_not_executed(tmp_path, marker):
    run = planted_run(tmp_path, lambda path: path.write_bytes(b""))
    run.write_bytes(pickle_payload(marker))
    with pytest.raises(ValueError):
        load_trained_run(run)


# ------------------------------------------------------------- run records (issue 16, 4)
def _bench_folder(out):
    from drpo_rl.benchmark import make_config, run_benchmark

    config = make_config("tiny", algorithms=("bc",), references=(), seeds=(0, 1), steps=3)
    run_benchmark(config, out, progress=False, echo=lambda *args: None)
    return config


def test_a_record_copied_into_another_cells_folder_is_refused(tmp_path):
    from drpo_rl.benchmark import run_benchmark
    from drpo_rl.benchmark.store import BenchmarkFolderError

    config = _bench_folder(tmp_path / "out")
    runs = tmp_path / "out" / "runs" / "medium" / "bc"
    (runs / "seed-1.json").write_bytes((runs / "seed-0.json").read_bytes())
    with pytest.raises(BenchmarkFolderError) as caught:
        run_benchmark(config, tmp_path / "out", progress=False, echo=lambda *args: None)
    assert str(caught.value) == (
        f"{runs / 'seed-1.json'}: holds the record of run 'medium/bc/seed-0', not of "
        "'medium/bc/seed-1' (copied or moved from another cell's folder); delete it to run "
        "medium/bc/seed-1 again"
    )


def test_a_record_copied_from_a_folder_with_other_settings_is_refused(tmp_path):
    from drpo_rl.benchmark import make_config, run_benchmark
    from drpo_rl.benchmark.store import BenchmarkFolderError

    _bench_folder(tmp_path / "a")
    other = make_config("tiny", algorithms=("bc",), references=(), seeds=(0,), steps=4)
    run_benchmark(other, tmp_path / "b", progress=False, echo=lambda *args: None)
    record = "runs/medium/bc/seed-0.json"
    (tmp_path / "b" / record).write_bytes((tmp_path / "a" / record).read_bytes())
    with pytest.raises(BenchmarkFolderError, match="made in an output folder with other settings"):
        run_benchmark(other, tmp_path / "b", progress=False, echo=lambda *args: None)

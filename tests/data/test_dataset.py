"""OfflineLogs: writing, re-opening, sampling, immutability and interrupted writes."""

import json
import multiprocessing
import os
import signal
import time

import pytest
import torch
from tensordict import MemoryMappedTensor, TensorDict
from torchrl.data import ReplayBuffer, SamplerWithoutReplacement, SliceSampler
from torchrl.envs import RenameTransform

from drpo_rl.data import FORMAT_VERSION, OfflineLogs
from drpo_rl.data.staging import StagedDataset


def _rows(n=50):
    return TensorDict(
        {
            "observation": torch.arange(n * 3, dtype=torch.float32).reshape(n, 3),
            "action": torch.arange(n) % 7,
            ("next", "reward"): torch.linspace(0, 1, n).unsqueeze(-1),
            ("next", "done"): torch.ones(n, 1, dtype=torch.bool),
        },
        batch_size=[n],
    )


def test_round_trip_keeps_every_value_and_metadata(tmp_path):
    td = _rows()
    keys = set(td.keys(True, True))
    logs = OfflineLogs.from_tensordict(td, tmp_path / "logs", {"env": "X", "seed": 3})
    assert set(td.keys(True, True)) == keys  # the caller's data is left as it was
    reopened = OfflineLogs.load(tmp_path / "logs")
    for dataset in (logs, reopened):
        assert len(dataset) == 50
        stored = dataset[:]
        assert set(stored.keys(True, True)) == set(td.keys(True, True))
        for key in td.keys(True, True):
            torch.testing.assert_close(stored[key], td[key], rtol=0, atol=0)
    assert reopened.sample(7).shape == torch.Size([7])
    meta = reopened.metadata
    assert meta["env"] == "X" and meta["seed"] == 3
    assert meta["format_version"] == FORMAT_VERSION
    files = meta["storage"].pop("files")
    assert meta["storage"] == {"shape": [50], "ndim": 1, "num_rows": 50}
    assert files["next/reward.memmap"]["shape"] == list(td["next", "reward"].shape)
    assert files["action.memmap"]["dtype"] == str(td["action"].dtype)
    on_disk = json.loads((tmp_path / "logs" / "metadata.json").read_text())
    assert on_disk == {**meta, "storage": {**meta["storage"], "files": files}}
    assert OfflineLogs.is_complete(tmp_path / "logs")


def test_loaded_tensors_are_memory_mapped_and_no_pickle_on_disk(tmp_path):
    OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    logs = OfflineLogs(tmp_path / "logs")
    for key, leaf in logs._storage._storage.items(True, True):
        assert isinstance(leaf, MemoryMappedTensor), key
        assert str(tmp_path / "logs" / "storage") in str(leaf.filename), key
    files = [p.name for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pickle"))]
    assert "COMPLETE" in files and "metadata.json" in files


def test_sample_batch_size_sampler_and_transform(tmp_path):
    logs = OfflineLogs.from_tensordict(
        _rows(50),
        tmp_path / "logs",
        batch_size=10,
        sampler=SamplerWithoutReplacement(),
        transform=RenameTransform([("next", "reward")], ["r"]),
    )
    seen = []
    for _ in range(5):
        batch = logs.sample()
        assert batch.batch_size == torch.Size([10])
        assert batch["observation"].shape == (10, 3) and batch["r"].shape == (10, 1)
        # rows stay intact: observation row i is [3i, 3i+1, 3i+2]
        i = batch["observation"][:, 0].long() // 3
        torch.testing.assert_close(batch["action"], i % 7)
        seen.append(i)
    # without replacement: one epoch covers every row exactly once
    assert torch.cat(seen).sort().values.tolist() == list(range(50))


def test_writer_is_immutable(tmp_path):
    logs = OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    with pytest.raises(RuntimeError, match="doesn't allow writing"):
        logs.extend(_rows(5))
    with pytest.raises(RuntimeError, match="doesn't allow writing"):
        logs.add(_rows(1)[0])
    assert len(OfflineLogs(tmp_path / "logs")) == 50


def test_env_time_layout_gives_contiguous_trajectories_for_slice_sampler(tmp_path):
    num_envs, time = 3, 8
    steps = torch.arange(time).expand(num_envs, time)
    traj = torch.arange(num_envs)[:, None].expand(num_envs, time) * 10 + (steps >= 4)
    td = TensorDict(
        {"step": steps.clone(), ("collector", "traj_ids"): traj.clone()},
        batch_size=[num_envs, time],
    )
    logs = OfflineLogs.from_tensordict(
        td,
        tmp_path / "logs",
        batch_size=8,
        sampler=SliceSampler(slice_len=4, traj_key=("collector", "traj_ids")),
    )
    layout = {k: v for k, v in logs.metadata["storage"].items() if k != "files"}
    assert layout == {"shape": [time, num_envs], "ndim": 2, "num_rows": 24}
    assert len(logs) == 24
    for _ in range(5):
        batch = logs.sample()
        assert batch.shape == torch.Size([8])
        for piece in batch.split(4):
            ids = piece["collector", "traj_ids"]
            assert (ids == ids[0]).all()  # a slice never crosses trajectories
            assert piece["step"].diff().eq(1).all()  # and walks forward in time


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.zeros(3), TypeError, "must be a TensorDict"),
        (TensorDict({"x": torch.zeros(0)}, [0]), ValueError, "empty"),
        (TensorDict({"x": torch.zeros(2, 2, 2)}, [2, 2, 2]), ValueError, "1 batch dim"),
        (TensorDict({"x": torch.zeros(2)}, [2]).set_non_tensor("s", "a"), ValueError, "'s'"),
    ],
)
def test_from_tensordict_rejects_bad_data(tmp_path, bad, error, match):
    with pytest.raises(error, match=match):
        OfflineLogs.from_tensordict(bad, tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_from_tensordict_rejects_bad_metadata_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        OfflineLogs.from_tensordict(_rows(), tmp_path / "a", {"storage": 1})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        OfflineLogs.from_tensordict(_rows(), tmp_path / "b", {"x": object()})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        OfflineLogs.from_tensordict(_rows(), tmp_path / "c", {"x": float("nan")})
    assert sorted(os.listdir(tmp_path)) == []


def test_refuses_to_overwrite_but_accepts_empty_folder(tmp_path):
    OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        OfflineLogs.from_tensordict(_rows(5), tmp_path / "logs")
    assert len(OfflineLogs(tmp_path / "logs")) == 50
    (tmp_path / "empty").mkdir()
    assert len(OfflineLogs.from_tensordict(_rows(5), tmp_path / "empty")) == 5


def test_missing_incomplete_and_wrong_version_folders_do_not_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OfflineLogs(tmp_path / "nothing")
    OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    (tmp_path / "logs" / "COMPLETE").unlink()
    with pytest.raises(FileNotFoundError, match="no complete dataset"):
        OfflineLogs(tmp_path / "logs")
    OfflineLogs.from_tensordict(_rows(), tmp_path / "v")
    meta = json.loads((tmp_path / "v" / "metadata.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "v" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version"):
        OfflineLogs(tmp_path / "v")


def test_exception_inside_staging_removes_it(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), StagedDataset(tmp_path / "logs") as staged:
        staged.make_storage(4)
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def _write_then_hang(path, written):
    with StagedDataset(path) as staged:
        storage = staged.make_storage(100)
        ReplayBuffer(storage=storage).extend(TensorDict({"x": torch.arange(60)}, [60]))
        written.set()
        time.sleep(60)
        staged.commit(storage, {})


def test_write_killed_with_sigkill_never_loads_and_is_cleaned_up(tmp_path):
    # A forked child (no re-import: fast) writes part of a dataset and is killed mid-write.
    context = multiprocessing.get_context("fork")
    written = context.Event()
    child = context.Process(target=_write_then_hang, args=(tmp_path / "logs", written))
    child.start()
    try:
        assert written.wait(timeout=60)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode == -signal.SIGKILL
    leftovers = os.listdir(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".logs.partial-")
    assert not OfflineLogs.is_complete(tmp_path / "logs")
    with pytest.raises(FileNotFoundError):
        OfflineLogs(tmp_path / "logs")
    # The next write to the same path removes the dead writer's folder.
    OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    assert os.listdir(tmp_path) == ["logs"]


def _tamper_extra_file(storage):
    (storage / "next" / "notes.txt").write_text("hello")
    return "next/notes.txt: not a file of the stored TensorDict"


def _tamper_long_tensor(storage):
    with open(storage / "observation.memmap", "ab") as file:
        file.write(b"\0" * 4)
    return "observation.memmap: expected 600 bytes .* found 604 bytes"


def _tamper_missing_tensor(storage):
    (storage / "next" / "done.memmap").unlink()
    return r"next/done.memmap: missing \(.*meta.json lists it\)"


def _tamper_link(storage):
    target = storage / "observation.memmap"
    os.replace(target, storage.parent / "elsewhere.memmap")
    os.symlink(storage.parent / "elsewhere.memmap", target)
    return "observation.memmap: a link"


def _tamper_type(storage):
    meta = json.loads((storage / "next" / "meta.json").read_text())
    meta["_type"] = "<class 'mymodule.Evil'>"
    (storage / "next" / "meta.json").write_text(json.dumps(meta))
    return r"next/meta.json: expected a TensorDict .* got \"<class 'mymodule.Evil'>\""


def _tamper_pytree_index(storage):
    index = json.loads((storage / "storage_metadata.json").read_text())
    (storage / "storage_metadata.json").write_text(json.dumps({**index, "is_pytree": True}))
    return 'storage_metadata.json: expected TorchRL\'s index .*"is_pytree": false'


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_extra_file,
        _tamper_long_tensor,
        _tamper_missing_tensor,
        _tamper_link,
        _tamper_type,
        _tamper_pytree_index,
    ],
)
def test_storage_holding_anything_but_its_tensor_files_is_refused_untouched(tmp_path, tamper):
    OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    storage = tmp_path / "logs" / "storage"
    match = tamper(storage)
    before = {p: p.read_bytes() for p in storage.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=match):
        OfflineLogs(tmp_path / "logs")
    assert {p: p.read_bytes() for p in storage.rglob("*") if p.is_file()} == before


def test_keys_needing_file_name_encoding_and_empty_tensors_load(tmp_path):
    # tensordict percent-encodes such keys on disk and writes no file for 0 elements; the
    # storage check must expect exactly those names.
    data = TensorDict(
        {
            "a b": torch.arange(16.0).reshape(8, 2),
            "empty": torch.zeros(8, 0),
            ("x/y", "%"): torch.arange(8, dtype=torch.bfloat16),
        },
        batch_size=[8],
    )
    OfflineLogs.from_tensordict(data, tmp_path / "logs")
    stored = OfflineLogs(tmp_path / "logs")[:]
    for key in data.keys(True, True):
        assert torch.equal(stored[key], data[key]), key


def test_next_write_says_it_removes_an_interrupted_one(tmp_path, caplog):
    dead_pid = 2**22 + 777  # above Linux's default pid_max: no process has it
    staging = tmp_path / f".logs.partial-{dead_pid}-00ff"
    (staging / "storage").mkdir(parents=True)
    with caplog.at_level("WARNING", logger="drpo_rl.data.staging"):
        OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    assert os.listdir(tmp_path) == ["logs"]
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"found an interrupted write of {tmp_path / 'logs'} at {staging} (process {dead_pid} "
        "no longer runs); removing it and starting again"
    )


def test_metadata_that_is_not_a_json_object_is_refused_naming_the_file(tmp_path):
    OfflineLogs.from_tensordict(_rows(), tmp_path / "logs")
    (tmp_path / "logs" / "metadata.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="metadata.json: expected a JSON object, got a JSON array"):
        OfflineLogs(tmp_path / "logs")
    (tmp_path / "logs" / "metadata.json").write_text("{oops")
    with pytest.raises(ValueError, match="metadata.json: not a JSON document"):
        OfflineLogs(tmp_path / "logs")

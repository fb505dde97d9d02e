"""Data that must not change or merge quietly (issue 16, items 1-3).

Reading a dataset never writes through to its files; ids that do not fit an int64 are
refused rather than wrapped; a storage folder that disagrees with what its metadata.json
recorded (row count, shapes, dtypes, bytes) is refused, naming the file.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from tensordict import TensorDict

from drpo_rl.data import OfflineLogs
from envs.common.tables import TableError, read_table


def _logs(path, rows=12):
    data = TensorDict(
        {
            "observation": torch.arange(rows * 4, dtype=torch.float32).reshape(rows, 4),
            "action": torch.arange(rows),
            ("next", "reward"): torch.linspace(0, 1, rows).unsqueeze(-1),
        },
        batch_size=[rows],
    )
    return OfflineLogs.from_tensordict(data, path)


def _digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ 1. read-only reads
@pytest.mark.parametrize("index", [slice(None), slice(0, 5), 3], ids=["all", "0:5", "3"])
def test_editing_what_indexing_returns_leaves_the_files_unchanged(tmp_path, index):
    logs = _logs(tmp_path / "logs")
    before = _digests(tmp_path / "logs")
    expected = logs[:]["next", "reward"].clone()
    rows = logs[index]
    rows["next", "reward"] += 1
    rows["observation"].zero_()
    assert _digests(tmp_path / "logs") == before
    # Neither the files nor what this dataset hands out next.
    torch.testing.assert_close(logs[:]["next", "reward"], expected, rtol=0, atol=0)
    reopened = OfflineLogs(tmp_path / "logs")
    torch.testing.assert_close(reopened[:]["next", "reward"], expected, rtol=0, atol=0)


def test_a_collector_layout_copy_is_still_presented_env_time(tmp_path):
    data = TensorDict({"x": torch.arange(12).reshape(3, 4)}, batch_size=[3, 4])
    logs = OfflineLogs.from_tensordict(data, tmp_path / "logs")
    rows = logs[:]
    assert rows.batch_size == torch.Size([3, 4]) and rows["x"].tolist() == data["x"].tolist()
    rows["x"] += 100
    assert OfflineLogs(tmp_path / "logs")[:]["x"].tolist() == data["x"].tolist()


# --------------------------------------------------------------- 2. ids that do not fit
@pytest.mark.parametrize(
    "value, line",
    [(str(2**63), 3), (str(2**63 + 1), 3), (str(10**20), 3)],
    ids=["2**63", "2**63+1", "1e20"],
)
def test_ids_beyond_int64_are_refused_naming_file_line_column_value(tmp_path, value, line):
    path = tmp_path / "ratings.csv"
    path.write_text(f"user,item\n7,1\n{value},2\n")
    with pytest.raises(TableError) as caught:
        read_table(path, {"user": "id", "item": "id"})
    err = caught.value
    assert (err.path, err.line, err.column) == (str(path), line, "user")
    assert f"got {value!r}" in err.problem and "fits a signed 64-bit integer" in err.problem


def test_ids_that_float64_would_merge_are_refused(tmp_path):
    # "1e3" makes pandas read the column as float64, which cannot tell 2**53 + 1 from 2**53.
    path = tmp_path / "ratings.csv"
    path.write_text(f"user,item\n1e3,1\n{2**53 + 1},2\n{2**53},3\n")
    with pytest.raises(TableError, match=r"line 3, column 'user'.*'9007199254740993'"):
        read_table(path, {"user": "id", "item": "id"})


def test_the_largest_int64_id_reads_exactly(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(f"user,item\n{2**63 - 1},1\n{2**63 - 2},2\n")
    frame = read_table(path, {"user": "id", "item": "id"})
    assert frame["user"].tolist() == [2**63 - 1, 2**63 - 2]


# ------------------------------------------------------------- 3. tampered storage files
def _edit_json(path, edit):
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_a_smaller_len_in_storage_metadata_is_refused(tmp_path):
    _logs(tmp_path / "logs")
    index = tmp_path / "logs" / "storage" / "storage_metadata.json"
    _edit_json(index, lambda d: d.update(len=5))
    with pytest.raises(ValueError) as caught:
        OfflineLogs(tmp_path / "logs")
    assert str(caught.value).startswith(f"{index}: records 5 rows but ")
    assert "records 12" in str(caught.value)


@pytest.mark.parametrize(
    "entry, change, what",
    [
        ("observation", {"shape": [24, 2]}, "shape"),  # same bytes, other shape
        ("observation", {"dtype": "torch.int32"}, "dtype"),  # same bytes, other dtype
    ],
)
def test_same_size_shape_or_dtype_changes_are_refused(tmp_path, entry, change, what):
    _logs(tmp_path / "logs")
    meta = tmp_path / "logs" / "storage" / "meta.json"
    _edit_json(meta, lambda d: d[entry].update(change))
    with pytest.raises(ValueError) as caught:
        OfflineLogs(tmp_path / "logs")
    file = tmp_path / "logs" / "storage" / f"{entry}.memmap"
    assert str(caught.value).startswith(f"{file}: meta.json gives {what} ")
    assert "the layout was edited" in str(caught.value)


def test_edited_bytes_are_refused_by_the_recorded_checksum(tmp_path):
    _logs(tmp_path / "logs")
    file = tmp_path / "logs" / "storage" / "action.memmap"
    data = bytearray(file.read_bytes())
    data[8] ^= 1  # row 1's action 1 becomes 0: still a valid int64
    file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"^{file}: its bytes changed since the dataset"):
        OfflineLogs(tmp_path / "logs")


@pytest.mark.parametrize("key", ["storage", "files", "num_rows"])
def test_metadata_missing_a_layout_key_names_it(tmp_path, key):
    _logs(tmp_path / "logs")
    path = tmp_path / "logs" / "metadata.json"
    if key == "storage":
        _edit_json(path, lambda d: d.pop("storage"))
        expected = "missing key 'storage'"
    else:
        _edit_json(path, lambda d: d["storage"].pop(key))
        expected = f"missing key 'storage.{key}'"
    with pytest.raises(ValueError, match=rf"^{path}: {expected}"):
        OfflineLogs(tmp_path / "logs")

"""drpo_rl.data.loaders.obd: the Open Bandit Dataset -> bandit logs with propensities."""

import math

import pytest
import torch

from drpo_rl.data import OfflineLogs
from drpo_rl.data.loaders import TableError, load_obd, obd_sample_path, parse_obd

HEADER = (
    ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,"
    "user-item_affinity_0,user-item_affinity_1,user-item_affinity_2\n"
)
ROWS = [
    "0,2019-11-24 00:00:34.762830+00:00,2,3,0,0.5,aa,x1,0.0,1.0,0.0\n",
    "1,2019-11-24 00:00:35.000000+00:00,0,1,1,0.25,bb,x1,0.0,0.0,2.0\n",
    "2,2019-11-24 00:00:36.000000+00:00,1,2,0,1.0,aa,x2,3.0,0.0,0.0\n",
]


def obd_file(folder, rows=ROWS, items=None):
    path = folder / "all.csv"
    path.write_text(HEADER + "".join(rows))
    if items is not None:
        (folder / "item_context.csv").write_text(
            ",item_id,item_feature_0\n" + "".join(f"{i},{i},0.5\n" for i in range(items))
        )
    return path


def test_keys_and_observation_layout(tmp_path):
    logs = parse_obd(obd_file(tmp_path))
    td = logs.data
    assert td.batch_size == (3,)
    meta = logs.metadata
    assert meta["vocabulary"] == {
        "position": [1, 2, 3],
        "user_feature_0": ["aa", "bb"],
        "user_feature_1": ["x1", "x2"],
    }
    assert [(p["name"], p["columns"]) for p in meta["observation_layout"]] == [
        ("position", [0, 3]),
        ("user_feature_0", [3, 5]),
        ("user_feature_1", [5, 7]),
        ("affinity", [7, 10]),
    ]
    assert td["observation"][0].tolist() == [0, 0, 1, 1, 0, 1, 0, 0, 1, 0]
    assert td["observation"][1].tolist() == [1, 0, 0, 0, 1, 1, 0, 0, 0, 2]
    assert td["action"].tolist() == [2, 0, 1] and td["position"].tolist() == [3, 1, 2]
    torch.testing.assert_close(
        td["behavior_log_prob"], torch.tensor([math.log(0.5), math.log(0.25), 0.0])
    )
    assert td["behavior_log_prob"].shape == (3,)
    assert td["next", "reward"].squeeze(-1).tolist() == [0.0, 1.0, 0.0]
    assert td["next", "done"].all() and td["next", "terminated"].all()
    assert not td["next", "truncated"].any()
    assert torch.equal(td["next", "observation"], td["observation"])
    assert td["timestamp"][0].item() == pytest.approx(1574553634.76283, abs=1e-5)
    assert meta["num_items"] == 3 and meta["num_items_from"] == "the largest item_id + 1"


def test_item_context_sets_the_catalogue_size(tmp_path):
    logs = parse_obd(obd_file(tmp_path, items=80))
    assert logs.metadata["num_items"] == 80 and logs.metadata["item_ids"] == list(range(80))
    path = obd_file(tmp_path, items=2)
    with pytest.raises(TableError) as info:
        parse_obd(path)
    assert str(info.value) == (
        f"{path}, line 2, column 'item_id': expected an item id < 2 (the rows of "
        f"{tmp_path / 'item_context.csv'}), got 2"
    )


def test_vocabulary_is_shared_between_files(tmp_path):
    first = parse_obd(obd_file(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    second = parse_obd(obd_file(other, ROWS[:1]), vocabulary=first.metadata["vocabulary"])
    assert torch.equal(second.data["observation"][0], first.data["observation"][0])
    row = "3,2019-11-24 00:00:37+00:00,1,2,0,0.5,cc,x1,0,0,0\n"
    path = obd_file(other, ROWS[:1] + [row])
    with pytest.raises(TableError) as info:
        parse_obd(path, vocabulary=first.metadata["vocabulary"])
    assert str(info.value) == (
        f"{path}, line 3, column 'user_feature_0': value 'cc' is not in the given vocabulary "
        "(2 categories)"
    )


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        (
            "3,2019-11-24 00:00:37+00:00,1,2,0,0.0,aa,x1,0,0,0\n",
            "propensity_score",
            "expected a probability in (0, 1], got 0.0",
        ),
        (
            "3,2019-11-24 00:00:37+00:00,1,0,0,0.5,aa,x1,0,0,0\n",
            "position",
            "expected a slate position >= 1, got 0",
        ),
        (
            "3,2019-11-24 00:00:37+00:00,-1,2,0,0.5,aa,x1,0,0,0\n",
            "item_id",
            "expected a non-negative integer id, got '-1'",
        ),
        (
            "3,2019-11-24 00:00:37+00:00,1,2,yes,0.5,aa,x1,0,0,0\n",
            "click",
            "expected 0 or 1, got 'yes'",
        ),
        (
            "3,2019-11-24 00:00:37+00:00,1,2,0,0.5,aa,,0,0,0\n",
            "user_feature_1",
            "missing value (empty or NaN); expected a non-empty value",
        ),
        (
            "3,2019-11-24 00:00:37+00:00,1,2,0,0.5,aa,x1,0,NaN,0\n",
            "user-item_affinity_1",
            "missing value (empty or NaN); expected a finite number",
        ),
        (
            "3,not a time,1,2,0,0.5,aa,x1,0,0,0\n",
            "timestamp",
            "expected a date and time, got 'not a time'",
        ),
    ],
)
def test_bad_values_name_file_line_column(tmp_path, row, column, problem):
    path = obd_file(tmp_path, ROWS + [row])
    with pytest.raises(TableError) as info:
        parse_obd(path)
    assert str(info.value) == f"{path}, line 5, column {column!r}: {problem}"


def test_missing_column_and_empty_file(tmp_path):
    path = tmp_path / "all.csv"
    path.write_text(HEADER.replace("propensity_score", "pscore") + ROWS[0])
    with pytest.raises(TableError) as info:
        parse_obd(path)
    assert (info.value.line, info.value.column) == (1, "propensity_score")
    path.write_text("")
    with pytest.raises(TableError, match=r"all.csv, line 1: empty file"):
        parse_obd(path)


def test_load_obd_stores_and_reopens(tmp_path):
    path = obd_file(tmp_path)
    logs = load_obd(path, tmp_path / "out", batch_size=2)
    assert isinstance(logs, OfflineLogs) and len(logs) == 3
    assert logs.sample()["behavior_log_prob"].shape == (2,)
    assert logs.metadata["vocabulary"]["user_feature_1"] == ["x1", "x2"]
    assert len(load_obd(path, tmp_path / "out")) == 3
    with pytest.raises(ValueError, match="options.num_items: stored None, requested 10"):
        load_obd(path, tmp_path / "out", num_items=10)


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_shipped_obd_samples(policy):
    path = obd_sample_path(policy, "all")
    if path is None:
        pytest.skip("obp is not installed (pip install --no-deps --ignore-requires-python obp)")
    logs = parse_obd(path)
    td = logs.data
    assert td.batch_size == (10_000,) and logs.metadata["num_items"] == 80
    assert (
        td["observation"].shape[1]
        == 3 + sum(len(v) for k, v in logs.metadata["vocabulary"].items() if k != "position") + 80
    )
    assert 0 <= int(td["action"].max()) < 80 and td["position"].unique().tolist() == [1, 2, 3]
    if policy == "random":  # the uniform logging policy over 80 items
        torch.testing.assert_close(td["behavior_log_prob"], torch.full((10_000,), -math.log(80)))
    assert (td["behavior_log_prob"] <= 0).all()

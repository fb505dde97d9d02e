"""load_interactions: any log of (user, item, reward, propensity, time) rows as offline logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from drpo_rl.data import OfflineLogs, load_interactions
from drpo_rl.data.loaders import TableError

COLUMNS = {"user": "uid", "item": "sku", "reward": "click", "time": "ts"}


def made_up_log(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """String ids, no propensities, a gap of a day in the timestamps."""
    rng = np.random.default_rng(seed)
    time = np.sort(rng.uniform(0, 1000, rows))
    time[rows // 2 :] += 86_400.0  # the gap
    time = np.round(time, 3)  # exact in every format written below
    return pd.DataFrame(
        {
            "uid": [f"user-{u:03d}" for u in rng.integers(0, 12, rows)],
            "sku": [f"SKU{i}" for i in rng.integers(0, 9, rows)],
            "click": rng.integers(0, 2, rows).astype(float),
            "ts": time,
        }
    )


def write_csv(frame: pd.DataFrame, path) -> None:
    frame.to_csv(path, index=False, float_format="%.17g")


def assert_same_rows(a: OfflineLogs, b: OfflineLogs) -> None:
    left, right = a[:], b[:]
    assert sorted(left.keys(True, True), key=str) == sorted(right.keys(True, True), key=str)
    for key in left.keys(True, True):
        assert torch.equal(left[key], right[key]), key


def test_string_ids_round_trip_and_layout(tmp_path):
    frame = made_up_log()
    write_csv(frame, tmp_path / "log.csv")
    logs = load_interactions(tmp_path / "log.csv", tmp_path / "logs", columns=COLUMNS)
    rows, meta = logs[:], logs.metadata
    users = np.array(meta["user_ids"], dtype=object)[rows["user"].numpy()]
    items = np.array(meta["item_ids"], dtype=object)[rows["action"].numpy()]
    # Each stored row is one row of the file: the multiset of (user, item, time) is the same.
    stored = sorted(zip(users, items, rows["timestamp"].tolist(), strict=True))
    assert stored == sorted(zip(frame["uid"], frame["sku"], frame["ts"], strict=True))
    assert len(set(meta["item_ids"])) == len(meta["item_ids"]) == frame["sku"].nunique()
    k = 5
    assert rows["observation"].shape == (len(frame), 2 * k + 1)
    assert [p["name"] for p in meta["observation_layout"]] == [
        "history_item",
        "history_reward",
        "step",
    ]
    # Trajectories (users) are contiguous, in time order, and end with done.
    traj = rows["collector", "traj_ids"]
    assert (traj[1:] >= traj[:-1]).all()
    same = traj[1:] == traj[:-1]
    assert (rows["timestamp"][1:][same] >= rows["timestamp"][:-1][same]).all()
    assert torch.equal(rows["next", "done"].squeeze(-1), torch.cat([~same, torch.tensor([True])]))
    # The next row's history starts with this row's item.
    assert torch.equal(rows["history"][1:, 0][same], rows["action"][:-1][same])
    assert "behavior_log_prob" not in rows.keys()
    assert meta["propensity"]["logged"] is False and "importance" in meta["propensity"]["cannot"]


def test_streaming_equals_in_memory_row_for_row(tmp_path):
    frame = made_up_log(rows=300, seed=1)
    write_csv(frame, tmp_path / "log.csv")
    whole = load_interactions(frame, tmp_path / "whole", columns=COLUMNS, chunk_size=10_000)
    streamed = load_interactions(
        tmp_path / "log.csv", tmp_path / "csv", columns=COLUMNS, chunk_size=7
    )
    frame.to_parquet(tmp_path / "log.parquet")
    parquet = load_interactions(
        tmp_path / "log.parquet", tmp_path / "pq", columns=COLUMNS, chunk_size=13
    )
    frame.to_json(tmp_path / "log.jsonl", orient="records", lines=True, double_precision=15)
    jsonl = load_interactions(
        tmp_path / "log.jsonl", tmp_path / "jl", columns=COLUMNS, chunk_size=50
    )
    for other in (streamed, parquet, jsonl):
        assert_same_rows(whole, other)
        assert other.metadata["item_ids"] == whole.metadata["item_ids"]
        assert other.metadata["splits"] == whole.metadata["splits"]


def test_history_carries_across_chunks(tmp_path):
    frame = pd.DataFrame(
        {
            "user": ["a"] * 4 + ["b"],
            "item": ["i", "j", "k", "i", "j"],
            "reward": [1, 0, 1, 0, 1],
            "time": [1, 2, 3, 4, 5],
        }
    )
    logs = load_interactions(frame, tmp_path / "logs", history_length=3, chunk_size=1)
    rows = logs[:]
    assert rows["history"].tolist() == [
        [-1, -1, -1],
        [0, -1, -1],
        [1, 0, -1],
        [2, 1, 0],
        [-1, -1, -1],
    ]
    assert rows["history_reward"][3].tolist() == [1.0, 0.0, 1.0]
    assert rows["observation"][3, -1].item() == pytest.approx(3 / 4)  # step 3 of 4


def test_bad_row_names_file_row_column_value(tmp_path):
    frame = made_up_log(rows=40)
    write_csv(frame, tmp_path / "log.csv")
    lines = (tmp_path / "log.csv").read_text().splitlines()
    fields = lines[8].split(",")
    fields[2] = "yes"  # data row 7 (line 8) has a non-numeric reward
    lines[8] = ",".join(fields)
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError) as error:
        load_interactions(tmp_path / "log.csv", tmp_path / "refused", columns=COLUMNS, chunk_size=5)
    assert str(error.value) == (
        f"{tmp_path / 'log.csv'}, line 9, column 'click': data row 8: expected a reward in "
        "[0, 1], got 'yes'"
    )
    assert not (tmp_path / "refused").exists()
    skipped = load_interactions(
        tmp_path / "log.csv", tmp_path / "skipped", columns=COLUMNS, bad_rows="skip", chunk_size=5
    )
    assert len(skipped) == len(frame) - 1
    assert skipped.metadata["rows_skipped"]["total"] == 1
    assert skipped.metadata["rows_skipped"]["by_column"] == {"click": 1}
    assert "data row 8" in skipped.metadata["rows_skipped"]["first"]


def test_out_of_time_order_row_is_refused_not_reordered(tmp_path):
    frame = pd.DataFrame(
        {
            "user": ["a", "b", "a"],
            "item": ["x", "y", "x"],
            "reward": [1.0, 0.0, 1.0],
            "time": [10.0, 5.0, 9.0],
        }
    )
    with pytest.raises(
        TableError,
        match=r"DataFrame, column 'time': data row 3: expected a "
        r"time no earlier than the user's previous row .* got 9\.0",
    ):
        load_interactions(frame, tmp_path / "a")
    skipped = load_interactions(frame, tmp_path / "b", bad_rows="skip")
    assert skipped[:]["timestamp"].tolist() == [10.0, 5.0]


def test_time_split_and_propensities(tmp_path):
    frame = made_up_log(rows=100, seed=3)
    frame["p"] = np.linspace(0.1, 1.0, len(frame))
    logs = load_interactions(
        frame, tmp_path / "logs", columns={**COLUMNS, "propensity": "p"}, split=(0.6, 0.2, 0.2)
    )
    rows, splits = logs[:], logs.metadata["splits"]
    assert splits["rows"] == [60, 20, 20]
    low, high = splits["time_cutoffs"]
    assert (rows["timestamp"][rows["split"] == 0] < low).all()
    assert ((rows["timestamp"][rows["split"] == 2]) >= high).all()
    order = np.argsort(frame["ts"].to_numpy())
    assert low == frame["ts"].to_numpy()[order][60]  # the row of rank 60 opens validation
    assert torch.allclose(
        rows["behavior_log_prob"].exp().sort().values,
        torch.tensor(frame["p"].to_numpy(), dtype=torch.float32).sort().values,
    )


def test_features_sessions_and_reuse(tmp_path):
    frame = made_up_log(rows=60, seed=4)
    frame["visit"] = [
        f"{u}/{int(t // 86_400)}" for u, t in zip(frame["uid"], frame["ts"], strict=True)
    ]
    users = pd.DataFrame({"uid": sorted(frame["uid"].unique())})
    users["age"] = np.arange(len(users), dtype=float)
    items = pd.DataFrame({"sku": [f"SKU{i}" for i in range(10)], "price": np.arange(10.0)})
    options = dict(
        columns={**COLUMNS, "session": "visit"},
        user_features=users,
        item_features=items,
        history_length=2,
    )
    logs = load_interactions(frame, tmp_path / "logs", **options)
    rows, meta = logs[:], logs.metadata
    age = rows["observation"][:, -1]
    expected = [float(meta["user_ids"][u].split("-")[1]) for u in rows["user"].tolist()]
    assert age.tolist() == expected  # user-003 is the 4th of the sorted users: age 3
    assert meta["num_trajectories"] == frame["visit"].nunique()
    assert meta["item_features"]["rows_unused"] == 10 - frame["sku"].nunique()
    ages = torch.load(tmp_path / "logs" / "user_features.pt", weights_only=True)
    assert ages.squeeze(-1).tolist() == [float(u.split("-")[1]) for u in meta["user_ids"]]
    prices = torch.load(tmp_path / "logs" / "item_features.pt", weights_only=True)
    assert prices.squeeze(-1).tolist() == [float(i[3:]) for i in meta["item_ids"]]
    # Re-opened from the same frame and options without reading it; other options refused.
    assert_same_rows(load_interactions(frame, tmp_path / "logs", **options), logs)
    with pytest.raises(ValueError, match="history_length"):
        load_interactions(frame, tmp_path / "logs", **{**options, "history_length": 3})
    missing = users.iloc[1:]
    with pytest.raises(ValueError, match="user_features: DataFrame has no row for uid"):
        load_interactions(frame, tmp_path / "other", **{**options, "user_features": missing})


def test_bad_arguments_are_named(tmp_path):
    frame = made_up_log(rows=10)
    with pytest.raises(ValueError, match=r"columns: expected roles among .* \['usr'\]"):
        load_interactions(frame, tmp_path / "a", columns={"usr": "uid"})
    with pytest.raises(TableError, match=r"missing \['user', 'item', 'reward', 'time'\]"):
        load_interactions(frame, tmp_path / "b")
    with pytest.raises(ValueError, match="split: expected fractions summing to 1"):
        load_interactions(frame, tmp_path / "c", columns=COLUMNS, split=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="bad_rows: expected one of"):
        load_interactions(frame, tmp_path / "d", columns=COLUMNS, bad_rows="drop")


def test_a_log_without_users_is_a_bandit_log(tmp_path):
    frame = pd.DataFrame(
        {
            "item": ["a", "b", "a"],
            "reward": [1.0, 0.0, 1.0],
            "time": [
                "2019-11-24 00:00:34+00:00",
                "2019-11-24 00:00:35+00:00",
                "2019-11-24 00:00:35+00:00",
            ],
        }
    )
    logs = load_interactions(frame, tmp_path / "logs", columns={"user": None}, history_length=2)
    rows = logs[:]
    assert logs.metadata["user_ids"] == [1, 2, 3]  # each row its own user: its data row
    assert (rows["history"] == -1).all() and rows["next", "done"].all()
    assert rows["timestamp"].tolist() == [1574553634.0, 1574553635.0, 1574553635.0]

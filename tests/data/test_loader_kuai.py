"""drpo_rl.data.loaders.kuai: KuaiRand logs and KuaiRec matrices -> offline logs."""

import logging

import pytest
import torch

from drpo_rl.data import OfflineLogs
from drpo_rl.data.loaders import (
    KUAIRAND_SIGNALS,
    TableError,
    load_kuairand,
    load_kuairec,
    parse_kuairand,
    parse_kuairec,
)

RAND_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
    "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
    "is_profile_enter,is_rand,tab\n"
)


def rand_row(user, video, ms, click, like, is_rand=0, tab=1):
    return (
        f"{user},{video},20220408,1200,{ms},{click},{like},0,0,0,0,{click},5822,19960,0,0,0,"
        f"{is_rand},{tab}\n"
    )


@pytest.fixture
def kuairand_files(tmp_path):
    standard = tmp_path / "log_standard_4_08_to_4_21_pure.csv"
    standard.write_text(
        RAND_HEADER
        + rand_row(7, 4001, 1649400000000, 1, 0)
        + rand_row(3, 4002, 1649400001000, 0, 0, tab=4)
        + rand_row(7, 4002, 1649400002000, 0, 1)
    )
    random = tmp_path / "log_random_4_22_to_5_08_pure.csv"
    random.write_text(RAND_HEADER + rand_row(7, 4003, 1649300000000, 1, 1, is_rand=1))
    return standard, random


def test_kuairand_merges_files_by_user_and_time(kuairand_files):
    logs = parse_kuairand(kuairand_files, history_length=2)
    td = logs.data
    assert logs.metadata["user_ids"] == [3, 7] and logs.metadata["item_ids"] == [4001, 4002, 4003]
    # User 7's random-log row is the earliest of its rows.
    assert td["user"].tolist() == [0, 1, 1, 1] and td["user_id"].tolist() == [3, 7, 7, 7]
    assert td["item_id"].tolist() == [4002, 4003, 4001, 4002]
    assert td["action"].tolist() == [1, 2, 0, 1]
    assert td["timestamp"].tolist() == [1649400001.0, 1649300000.0, 1649400000.0, 1649400002.0]
    assert td["next", "reward"].squeeze(-1).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert td["is_rand"].tolist() == [0, 1, 0, 0] and td["tab"].tolist() == [4, 1, 1, 1]
    assert td["history"][3].tolist() == [0, 2]
    assert td["observation"].shape == (4, 5)
    assert td["next", "done"].squeeze(-1).tolist() == [True, False, False, True]
    assert logs.metadata["extra_keys"] == ["is_rand", "tab"]
    assert [s["rows_in_file"] for s in logs.metadata["source"]] == [3, 1]


def test_kuairand_reward_choice(kuairand_files):
    td = parse_kuairand(kuairand_files, reward="is_like").data
    assert td["next", "reward"].squeeze(-1).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert "is_click" in KUAIRAND_SIGNALS
    with pytest.raises(ValueError, match="reward: expected one of"):
        parse_kuairand(kuairand_files, reward="play_time_ms")


def test_kuairand_filter_and_store(kuairand_files, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="drpo_rl.data.loaders"):
        logs = parse_kuairand(kuairand_files, min_interactions_per_user=2)
    assert logs.rows_removed == {"min_interactions_per_user": 1} and len(logs) == 3
    assert "removed 1 of 4 rows" in caplog.text
    stored = load_kuairand(kuairand_files, tmp_path / "out", min_interactions_per_user=2)
    assert isinstance(stored, OfflineLogs) and len(stored) == 3
    assert stored.metadata["rows_removed"] == {"min_interactions_per_user": 1}
    with pytest.raises(ValueError, match="options.reward: stored 'is_click', requested 'is_like'"):
        load_kuairand(
            kuairand_files, tmp_path / "out", reward="is_like", min_interactions_per_user=2
        )


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        (rand_row(7, 4001, 1649400000000, 2, 0), "is_click", "expected 0 or 1, got '2'"),
        (
            rand_row(-7, 4001, 1649400000000, 1, 0),
            "user_id",
            "expected a non-negative integer id, got '-7'",
        ),
        (rand_row(7, 4001, "soon", 1, 0), "time_ms", "expected an integer, got 'soon'"),
    ],
)
def test_kuairand_bad_values(tmp_path, row, column, problem):
    path = tmp_path / "log.csv"
    path.write_text(RAND_HEADER + rand_row(1, 2, 1649400000000, 0, 0) + row)
    with pytest.raises(TableError) as info:
        parse_kuairand(path)
    assert str(info.value) == f"{path}, line 3, column {column!r}: {problem}"


def test_kuairand_missing_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,video_id,is_click\n1,2,0\n")
    with pytest.raises(TableError) as info:
        parse_kuairand(path)
    assert (info.value.line, info.value.column) == (1, "time_ms")
    assert "missing column(s) 'time_ms' in the header" in str(info.value)


REC_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"


def rec_file(tmp_path, rows):
    path = tmp_path / "small_matrix.csv"
    path.write_text(REC_HEADER + "".join(rows))
    return path


def rec_row(user, video, seconds, ratio):
    return f"{user},{video},4381,6067,2020-07-05 05:27:48.378,20200705,{seconds},{ratio}\n"


def test_kuairec_reward_is_capped_watch_ratio(tmp_path):
    path = rec_file(
        tmp_path,
        [
            rec_row(14, 148, 1593898068.5, 0.5),
            rec_row(14, 183, 1593898000.0, 3.1),
            rec_row(21, 148, 1593898100.0, 2.0),
        ],
    )
    logs = parse_kuairec(path, watch_ratio_cap=2.0)
    td = logs.data
    assert td["action"].tolist() == [1, 0, 0]  # user 14's 183 came first
    assert td["next", "reward"].squeeze(-1).tolist() == [1.0, 0.25, 1.0]
    torch.testing.assert_close(td["watch_ratio"], torch.tensor([3.1, 0.5, 2.0]))
    assert logs.metadata["rows_capped"] == 2
    assert logs.metadata["reward"] == "min(watch_ratio, 2) / 2"
    assert td["timestamp"].dtype == torch.float64 and td["timestamp"][1] == 1593898068.5


def test_kuairec_missing_timestamps_raise_or_are_dropped_openly(tmp_path):
    path = rec_file(
        tmp_path,
        [
            rec_row(14, 148, 1593898068.5, 0.5),
            "14,183,4381,6067,,,,1.2\n",
            rec_row(21, 148, 1593898100.0, 2.0),
        ],
    )
    with pytest.raises(TableError) as info:
        parse_kuairec(path)
    assert str(info.value) == (
        f"{path}, line 3, column 'timestamp': missing value (empty or NaN); "
        "expected a finite number"
    )
    logs = parse_kuairec(path, missing_timestamps="drop")
    assert logs.rows_removed == {"missing_timestamps": 1} and len(logs) == 2
    stored = load_kuairec(path, tmp_path / "out", missing_timestamps="drop")
    assert len(stored) == 2 and stored.metadata["rows_removed"] == {"missing_timestamps": 1}


def test_kuairec_bad_values(tmp_path):
    path = rec_file(tmp_path, [rec_row(14, 148, 1.0, 0.5), rec_row(14, 149, 2.0, -0.1)])
    with pytest.raises(TableError, match=r"line 3, column 'watch_ratio': expected a watch ratio"):
        parse_kuairec(path)
    path = rec_file(tmp_path, [rec_row(14, 148, 1.0, "nan")])
    with pytest.raises(TableError, match=r"line 2, column 'watch_ratio': missing value"):
        parse_kuairec(path)
    with pytest.raises(ValueError) as err:
        parse_kuairec(path, missing_timestamps="ignore")
    assert str(err.value) == "missing_timestamps: expected one of ['raise', 'drop'], got 'ignore'"
    with pytest.raises(ValueError, match="^watch_ratio_cap: expected a finite number > 0, got 0$"):
        parse_kuairec(path, watch_ratio_cap=0)
    empty = tmp_path / "big_matrix.csv"
    empty.write_text("")
    with pytest.raises(TableError, match=r"big_matrix.csv, line 1: empty file"):
        parse_kuairec(empty)

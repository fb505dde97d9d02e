"""Every bad input named before work starts (issue 16, items 6 and 7): loader options out of
range, files that are not UTF-8, ids that would build an absurd catalogue, unbounded sizes."""

from __future__ import annotations

import math

import pytest

import envs
from drpo_rl.data.loaders.kuai import load_kuairec, parse_kuairec
from drpo_rl.data.loaders.movielens import parse_movielens
from drpo_rl.data.loaders.obd import parse_obd
from envs.common.tables import TableError, read_table
from envs.config import MAX_HISTORY_LENGTH, RecSimConfig, UserSessionConfig
from envs.ratings import read_ratings

OBD_HEADER = (
    ",timestamp,item_id,position,click,propensity_score,user_feature_0,user-item_affinity_0\n"
)


def _obd(path, item_id=1):
    path.write_text(OBD_HEADER + f"0,2019-11-24 00:00:34.762830+00:00,{item_id},3,0,0.5,ab,0.0\n")
    return path


def _ratings(path):
    path.write_text("1\t10\t3\t100\n2\t11\t4\t101\n")
    return path


def _kuairec(path):
    path.write_text(
        "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
        "14,148,4381,6067,2020-07-05 05:27:48.378,20200705,1593898068.378,0.72\n"
    )
    return path


# ------------------------------------------------------------------------ loader options
@pytest.mark.parametrize(
    "scale", [(1.0, math.inf), (-math.inf, 5.0), (True, 5.0), (1.0,), "15"], ids=str
)
def test_rating_scale_must_be_two_finite_numbers(tmp_path, scale):
    with pytest.raises(ValueError, match=r"^rating_scale: expected \(lowest, highest\), two fin"):
        read_ratings(_ratings(tmp_path / "u.data"), format="ml-100k", rating_scale=scale)
    with pytest.raises(ValueError, match=r"^rating_scale: expected"):
        parse_movielens(_ratings(tmp_path / "u.data"), format="ml-100k", rating_scale=scale)


@pytest.mark.parametrize("cap", [math.inf, True, math.nan, 0])
def test_watch_ratio_cap_out_of_range_is_refused_by_parse_and_load(tmp_path, cap):
    path = _kuairec(tmp_path / "small_matrix.csv")
    with pytest.raises(ValueError, match=r"^watch_ratio_cap: expected a finite number > 0"):
        parse_kuairec(path, watch_ratio_cap=cap)
    # load_* made its cache key with float(cap) first: True passed as a cap of 1.0.
    with pytest.raises(ValueError, match=r"^watch_ratio_cap: expected a finite number > 0"):
        load_kuairec(path, tmp_path / "out", watch_ratio_cap=cap)
    assert not (tmp_path / "out").exists()


def test_obd_item_id_that_would_make_a_huge_catalogue_is_named(tmp_path):
    path = _obd(tmp_path / "all.csv", item_id=10**12)
    with pytest.raises(TableError) as caught:
        parse_obd(path)
    err = caught.value
    assert (err.line, err.column) == (2, "item_id")
    assert "item_id 1000000000000 would make a catalogue of 1000000000001 items" in err.problem


@pytest.mark.parametrize(
    "vocabulary, expected",
    [
        ({"position": [1, 3]}, r"exactly the file's columns \['position', 'user_feature_0'\]"),
        (
            {"position": [3], "user_feature_0": ["ab"], "user_feature_9": ["x"]},
            "exactly the file's columns",
        ),
        ({"position": [3], "user_feature_0": "ab"}, r"\['user_feature_0'\]: expected a list"),
        ({"position": [3, 3], "user_feature_0": ["ab"]}, r"\['position'\]: expected distinct"),
    ],
)
def test_obd_vocabulary_that_does_not_match_the_file_is_refused(tmp_path, vocabulary, expected):
    with pytest.raises(ValueError, match=rf"^vocabulary.*{expected}"):
        parse_obd(_obd(tmp_path / "all.csv"), vocabulary=vocabulary)


def test_obd_matching_vocabulary_is_accepted(tmp_path):
    logs = parse_obd(
        _obd(tmp_path / "all.csv"), vocabulary={"position": [1, 3], "user_feature_0": ["ab"]}
    )
    assert logs.metadata["vocabulary"] == {"position": [1, 3], "user_feature_0": ["ab"]}


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes("user,item\n1,2\n3,caf\xe9\n".encode("latin-1"))
    with pytest.raises(TableError) as caught:
        read_table(path, {"user": "id", "item": "text"})
    assert caught.value.line == 3
    assert caught.value.problem.startswith("not UTF-8 text: byte b'\\xe9' at byte offset 19")


# ------------------------------------------------------------------------------ 7. sizes
@pytest.mark.parametrize(
    "make, field, value",
    [
        (UserSessionConfig, "history_length", 10**9),
        (UserSessionConfig, "max_length", 10**9),
        (RecSimConfig, "num_items", 10**12),
        (RecSimConfig, "embedding_dim", 10**6),
    ],
)
def test_size_fields_are_bounded_before_anything_is_allocated(make, field, value):
    with pytest.raises(ValueError, match=rf"^config field '{field}': expected an integer in"):
        make(**{field: value})


def test_catalogue_bounded_as_a_whole():
    with pytest.raises(ValueError, match=r"num_items x embedding_dim <= 1073741824"):
        RecSimConfig(num_items=10**8, embedding_dim=64)


def test_make_env_refuses_a_huge_history_at_once():
    with pytest.raises(ValueError, match="history_length"):
        envs.make_env("UserSession", history_length=10**9)


def test_loader_history_length_is_bounded(tmp_path):
    with pytest.raises(
        ValueError,
        match=rf"history_length: expected an integer in \[0, "
        rf"{MAX_HISTORY_LENGTH}\]",
    ):
        parse_movielens(_ratings(tmp_path / "u.data"), format="ml-100k", history_length=10**9)


@pytest.mark.parametrize(
    "setting, expected",
    [
        ({"batch_size": 10**9}, "batch_size must be at most 1048576, got 1000000000"),
        ({"lr": math.inf}, "lr must be a finite positive number, got inf"),
        ({"lr": True}, "lr must be a finite positive number, got True"),
    ],
)
def test_benchmark_sizes_and_rates_are_bounded(setting, expected):
    from drpo_rl.benchmark import make_config

    with pytest.raises(ValueError, match=f"^{expected}$"):
        make_config("tiny", **setting)


def test_bench_command_names_a_bad_setting_in_one_line(tmp_path, capsys):
    from drpo_rl.cli import main

    out = tmp_path / "out"
    assert main(["bench", "--preset", "tiny", "--batch-size", str(10**9), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "drpo-rl bench: error: batch_size must be at most 1048576, got 1000000000\n"
    )
    assert not out.exists()

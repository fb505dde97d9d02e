"""drpo_rl.data.loaders.movielens: ratings files -> offline logs."""

import logging

import pytest
import torch
from torchrl.data import SliceSampler

from drpo_rl.data import OfflineLogs
from drpo_rl.data.loaders import (
    TableError,
    load_movielens,
    parse_movielens,
    recbole_ml100k_path,
)

# user item rating timestamp; user 5 rates 3 movies, user 2 rates 2, user 9 rates 1.
ROWS = [
    (5, 30, 4, 300),
    (2, 10, 1, 100),
    (5, 10, 5, 100),
    (9, 20, 3, 50),
    (5, 20, 2, 200),
    (2, 30, 5, 150),
]


def write(folder, fmt="ml-100k", rows=ROWS):
    if fmt == "ml-100k":
        path = folder / "u.data"
        path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    elif fmt == "ml-1m":
        path = folder / "ratings.dat"
        path.write_text("".join("::".join(map(str, r)) + "\n" for r in rows))
    else:
        path = folder / "ml.inter"
        path.write_text(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            + "".join("\t".join(map(str, r)) + "\n" for r in rows)
        )
    return path


def test_keys_shapes_dtypes_and_values(tmp_path):
    logs = parse_movielens(write(tmp_path), history_length=2)
    td = logs.data
    assert td.batch_size == (6,)
    assert td["observation"].shape == (6, 5) and td["observation"].dtype == torch.float32
    assert td["history"].dtype == torch.int64 and td["action"].dtype == torch.int64
    assert td["next", "reward"].shape == (6, 1) and td["next", "reward"].dtype == torch.float32
    for key in ("done", "terminated", "truncated"):
        assert td["next", key].shape == (6, 1) and td["next", key].dtype == torch.bool
    assert "behavior_log_prob" not in td.keys()
    # Rows by user index (2, 5, 9 -> 0, 1, 2), then time.
    assert logs.metadata["user_ids"] == [2, 5, 9] and logs.metadata["item_ids"] == [10, 20, 30]
    assert td["user"].tolist() == [0, 0, 1, 1, 1, 2]
    assert td["action"].tolist() == [0, 2, 0, 1, 2, 1]
    assert td["timestamp"].tolist() == [100.0, 150.0, 100.0, 200.0, 300.0, 50.0]
    assert td["rating"].tolist() == [1.0, 5.0, 5.0, 2.0, 4.0, 3.0]
    assert td["next", "reward"].squeeze(-1).tolist() == [0.0, 1.0, 1.0, 0.25, 0.75, 0.5]
    assert td["history"].tolist() == [[-1, -1], [0, -1], [-1, -1], [0, -1], [1, 0], [-1, -1]]
    assert td["history_reward"][4].tolist() == [0.25, 1.0]
    # observation = (history + 1) / N | history rewards | step / max_steps (3)
    torch.testing.assert_close(td["observation"][4], torch.tensor([2 / 3, 1 / 3, 0.25, 1, 2 / 3]))
    assert td["next", "done"].squeeze(-1).tolist() == [False, True, False, False, True, True]
    assert torch.equal(td["next", "truncated"], td["next", "done"])
    assert not td["next", "terminated"].any()
    assert torch.equal(td["collector", "traj_ids"], td["user"])
    assert torch.equal(td["next", "item"], td["action"])
    assert logs.metadata["max_steps"] == 3 and logs.rows_removed == {}


def test_next_observation_is_the_following_row_of_the_same_user(tmp_path):
    td = parse_movielens(write(tmp_path), history_length=3).data
    same_user = td["user"][1:] == td["user"][:-1]
    assert torch.equal(td["next", "observation"][:-1][same_user], td["observation"][1:][same_user])
    assert torch.equal(td["next", "history"][:-1][same_user], td["history"][1:][same_user])
    # At a user's end the next observation still holds the last item and its reward.
    last = td["next", "done"].squeeze(-1)
    assert torch.equal(td["next", "history"][last][:, 0], td["action"][last])


@pytest.mark.parametrize("fmt", ["ml-1m", "recbole"])
def test_formats_give_identical_logs(tmp_path, fmt):
    reference = parse_movielens(write(tmp_path, "ml-100k")).data
    other = parse_movielens(write(tmp_path, fmt)).data
    assert (reference == other).all()


def test_history_length_zero(tmp_path):
    td = parse_movielens(write(tmp_path), history_length=0).data
    assert td["observation"].shape == (6, 1) and td["history"].shape == (6, 0)


def test_row_filter_reports_what_it_removed(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="drpo_rl.data.loaders"):
        logs = parse_movielens(write(tmp_path), min_ratings_per_user=2)
    assert logs.rows_removed == {"min_ratings_per_user": 1}
    assert len(logs) == 5 and logs.metadata["user_ids"] == [2, 5]
    assert "min_ratings_per_user=2 removed 1 of 6 rows (1 of 3 users)" in caplog.text
    logs = parse_movielens(write(tmp_path), min_ratings_per_user=3)
    assert logs.rows_removed == {"min_ratings_per_user": 3} and len(logs) == 3
    with pytest.raises(ValueError, match="min_ratings_per_user=4 removes every row"):
        parse_movielens(write(tmp_path), min_ratings_per_user=4)
    with pytest.raises(ValueError, match="min_ratings_per_user: expected an integer >= 1"):
        parse_movielens(write(tmp_path), min_ratings_per_user=0)


@pytest.mark.parametrize(
    ("row", "line", "column", "problem"),
    [
        ("5\t-30\t4\t300", 3, "item", "expected a non-negative integer id, got '-30'"),
        ("5\t30\tfour\t300", 3, "rating", "expected a finite number, got 'four'"),
        ("5\t30\tnan\t300", 3, "rating", "missing value (empty or NaN); expected a finite number"),
        ("5\t30\t4", 3, "timestamp", "missing value (empty or NaN); expected an integer"),
    ],
)
def test_bad_rows_raise_with_file_line_column(tmp_path, row, line, column, problem):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t4\n1\t3\t3\t5\n" + row + "\n")
    with pytest.raises(TableError) as info:
        parse_movielens(path)
    assert str(info.value) == f"{path}, line {line}, column {column!r}: {problem}"


def test_empty_file(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("")
    with pytest.raises(TableError, match=r"u.data, line 1: empty file"):
        parse_movielens(path)


def test_load_stores_reopens_and_refuses_other_options(tmp_path):
    path = write(tmp_path)
    out = tmp_path / "logs"
    logs = load_movielens(path, out, history_length=2, batch_size=4)
    assert isinstance(logs, OfflineLogs) and len(logs) == 6
    assert logs.sample().batch_size == (4,)
    parsed = parse_movielens(path, history_length=2).data
    assert (logs[:].exclude("index") == parsed).all()
    meta = logs.metadata
    assert meta["item_ids"] == [10, 20, 30] and meta["request"]["options"]["history_length"] == 2
    assert meta["observation_layout"][2] == {
        "name": "step",
        "columns": [4, 5],
        "meaning": "earlier interactions of the user / max_steps",
    }
    again = load_movielens(path, out, history_length=2)
    assert (again[:].exclude("index") == parsed).all()
    with pytest.raises(ValueError, match=r"options.history_length: stored 2, requested 3"):
        load_movielens(path, out, history_length=3)
    path.write_text(path.read_text().replace("5\t30\t4\t300", "5\t30\t1\t300"))
    with pytest.raises(ValueError, match=r"sha256: stored '[0-9a-f]+', requested '[0-9a-f]+'"):
        load_movielens(path, out, history_length=2)


def test_shipped_movielens_100k(tmp_path):
    path = recbole_ml100k_path()
    if path is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    logs = load_movielens(
        path,
        tmp_path / "ml",
        sampler=SliceSampler(slice_len=10, traj_key=("collector", "traj_ids")),
        batch_size=40,
    )
    assert len(logs) == 100_000
    meta = logs.metadata
    assert (meta["num_users"], meta["num_items"]) == (943, 1682)
    td = logs[:]
    assert int(td["next", "done"].sum()) == 943
    assert td["next", "reward"].min() == 0.0 and td["next", "reward"].max() == 1.0
    batch = logs.sample()
    # Ten slices of ten consecutive rows, each within one user.
    users = batch["collector", "traj_ids"].view(4, 10)
    assert (users == users[:, :1]).all()


def test_file_ids_travel_with_each_row(tmp_path):
    td = parse_movielens(write(tmp_path)).data
    assert td["user_id"].tolist() == [2, 2, 5, 5, 5, 9]
    assert td["item_id"].tolist() == [10, 30, 10, 20, 30, 20]


USERS = "2|30|F|writer|11111\n5|45|M|artist|22222\n9|18|M|student|33333\n"


def test_user_features_extend_the_observation(tmp_path):
    (tmp_path / "u.user").write_text(USERS)
    logs = parse_movielens(write(tmp_path), history_length=2, user_features=tmp_path / "u.user")
    td = logs.data
    assert logs.metadata["user_feature_vocabulary"] == {
        "gender": ["F", "M"],
        "occupation": ["artist", "student", "writer"],
    }
    assert [(p["name"], p["columns"]) for p in logs.metadata["observation_layout"]] == [
        ("history_item", [0, 2]),
        ("history_reward", [2, 4]),
        ("step", [4, 5]),
        ("age", [5, 6]),
        ("gender", [6, 8]),
        ("occupation", [8, 11]),
    ]
    assert td["observation"].shape == (6, 11)
    # Row 2 is user 5's first rating: age 45, M, artist.
    torch.testing.assert_close(td["observation"][2, 5:], torch.tensor([0.45, 0, 1, 1, 0, 0]))
    torch.testing.assert_close(td["next", "observation"][:, 5:], td["observation"][:, 5:])
    plain = parse_movielens(write(tmp_path), history_length=2).data
    assert torch.equal(td["observation"][:, :5], plain["observation"])


def test_user_features_must_cover_every_user_once(tmp_path):
    users = tmp_path / "u.user"
    users.write_text(USERS.replace("9|18|M|student|33333\n", ""))
    with pytest.raises(ValueError, match=r"u.user: no features for user id 9 \(1 user\(s\) of"):
        parse_movielens(write(tmp_path), user_features=users)
    users.write_text(USERS + "5|46|M|artist|22222\n")
    with pytest.raises(TableError) as info:
        parse_movielens(write(tmp_path), user_features=users)
    assert str(info.value) == f"{users}, line 4, column 'user_id': user id 5 appears twice"
    users.write_text(USERS.replace("|45|", "|old|"))
    with pytest.raises(TableError, match=r"line 2, column 'age': expected a finite number"):
        parse_movielens(write(tmp_path), user_features=users)


def test_shipped_movielens_100k_user_features():
    path = recbole_ml100k_path()
    if path is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    logs = parse_movielens(path, user_features=path.with_suffix(".user"))
    vocabulary = logs.metadata["user_feature_vocabulary"]
    assert vocabulary["gender"] == ["F", "M"] and len(vocabulary["occupation"]) == 21
    assert logs.data["observation"].shape == (100_000, 11 + 1 + 2 + 21)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("u.user", USERS),
        ("users.dat", "2::F::30::writer::11111\n5::M::45::artist::22222\n9::M::18::student::3\n"),
        (
            "ml.user",
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            "9\t18\tM\tstudent\t3\n2\t30\tF\twriter\t1\n5\t45\tM\tartist\t2\n",
        ),
    ],
)
def test_user_feature_formats_encode_alike(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    td = parse_movielens(write(tmp_path), history_length=1, user_features=tmp_path / name).data
    expected = torch.tensor([[0.30, 1, 0, 0, 0, 1], [0.45, 0, 1, 1, 0, 0], [0.18, 0, 1, 0, 1, 0]])
    torch.testing.assert_close(td["observation"][:, 3:], expected[td["user"]])

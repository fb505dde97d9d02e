"""envs.ratings: the ratings formats, and errors that name the file, line and column."""

import numpy as np
import pytest

from envs.common.tables import TableError, read_table
from envs.fitted import recbole_ml100k_path
from envs.ratings import Ratings, detect_ratings_format, read_ratings

ROWS = [
    (196, 242, 3, 881250949),
    (186, 302, 3, 891717742),
    (22, 377, 1, 878887116),
    (196, 51, 5, 881250950),
]


def write_format(folder, fmt, rows=ROWS):
    if fmt == "ml-100k":
        path, text = folder / "u.data", "".join("\t".join(map(str, r)) + "\n" for r in rows)
    elif fmt == "ml-1m":
        path, text = folder / "ratings.dat", "".join("::".join(map(str, r)) + "\n" for r in rows)
    elif fmt == "recbole":
        path = folder / "ml.inter"
        text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
            "\t".join(map(str, r)) + "\n" for r in rows
        )
    else:
        path = folder / "ratings.csv"
        text = "user_id,item_id,rating,timestamp\n" + "".join(
            ",".join(map(str, r)) + "\n" for r in rows
        )
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m", "recbole", "csv"])
def test_every_format_reads_the_same_ratings(tmp_path, fmt):
    path = write_format(tmp_path, fmt)
    r = read_ratings(path)
    assert r.format == fmt == detect_ratings_format(path)
    assert r.user.tolist() == [row[0] for row in ROWS]
    assert r.item.tolist() == [row[1] for row in ROWS]
    assert r.rating.tolist() == [3.0, 3.0, 1.0, 5.0]
    assert r.timestamp.tolist() == [row[3] for row in ROWS]
    assert r.has_timestamp and r.rating_scale == (1.0, 5.0)
    assert r.first_line == (1 if fmt in ("ml-100k", "ml-1m") else 2)


def test_reindexing_and_rating01(tmp_path):
    r = read_ratings(write_format(tmp_path, "ml-100k"))
    assert r.user_ids.tolist() == [22, 186, 196] and r.item_ids.tolist() == [51, 242, 302, 377]
    assert r.user_index.tolist() == [2, 1, 0, 2] and r.item_index.tolist() == [1, 2, 3, 0]
    assert np.array_equal(r.user_ids[r.user_index], r.user)
    assert r.rating01.tolist() == [0.5, 0.5, 0.0, 1.0]
    assert (r.num_users, r.num_items, len(r)) == (3, 4, 4)


def test_other_rating_scale_and_missing_timestamp(tmp_path):
    path = tmp_path / "stars.csv"
    path.write_text("user_id,item_id,rating\n1,1,0\n2,1,10\n1,3,2.5\n")
    r = read_ratings(path, rating_scale=(0, 10))
    assert r.rating01.tolist() == [0.0, 1.0, 0.25]
    # No timestamp: file order is the time order.
    assert not r.has_timestamp and r.timestamp.tolist() == [0, 1, 2]


def test_unknown_format_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"cannot tell the ratings format.*'ml-100k'"):
        detect_ratings_format(tmp_path / "ratings.txt")
    with pytest.raises(ValueError) as err:
        read_ratings(write_format(tmp_path, "csv"), format="parquet")
    assert str(err.value) == (
        "format: expected one of ['ml-100k', 'ml-1m', 'recbole', 'csv'], got 'parquet'"
    )


BAD = [
    # (file name, content, line, column, problem)
    ("u.data", "", 1, None, "empty file; expected columns user, item, rating, timestamp"),
    (
        "u.data",
        "1\t2\t3\t4\n1\t2\t3\n",
        2,
        "timestamp",
        "missing value (empty or NaN); expected an integer",
    ),
    (
        "u.data",
        "1\t2\t3\n",
        1,
        "timestamp",
        "expected 4 fields (user, item, rating, timestamp), found 3",
    ),
    (
        "u.data",
        "1\t2\t3\t4\n1\t2\t3\t4\t9\n",
        2,
        None,
        "expected 4 fields (user, item, rating, timestamp), found 5",
    ),
    ("u.data", "1\t2\t3\t4\n5\t6\tgood\t7\n", 2, "rating", "expected a finite number, got 'good'"),
    (
        "u.data",
        "1\t2\t3\t4\n5\t6\tNaN\t7\n",
        2,
        "rating",
        "missing value (empty or NaN); expected a finite number",
    ),
    (
        "u.data",
        "1\t2\t3\t4\n5\t6\t3\t7\n-5\t6\t3\t7\n",
        3,
        "user",
        "expected a non-negative integer id, got '-5'",
    ),
    ("u.data", "1\t2.5\t3\t4\n", 1, "item", "expected a non-negative integer id, got '2.5'"),
    (
        "u.data",
        "1\t2\t3\t4\n\n1\t2\t3\t4\n",
        2,
        "user",
        "missing value (empty or NaN); expected a non-negative integer id",
    ),
    (
        "u.data",
        "1\t2\t6\t4\n",
        1,
        "rating",
        "rating 6 outside the rating scale [1, 5] (pass rating_scale= for another scale)",
    ),
    ("ratings.dat", "1::2::3::4\n1::2::x::4\n", 2, "rating", "expected a finite number, got 'x'"),
    (
        "r.inter",
        "user_id:token\titem_id:token\n1\t2\n",
        1,
        "rating",
        "missing column(s) 'rating' in the header; found: 'user_id', 'item_id'",
    ),
    (
        "r.inter",
        "user_id:token\titem_id:token\trating:float\n",
        2,
        None,
        "no data rows after the header; expected columns user_id, item_id, rating, "
        "timestamp (optional)",
    ),
    (
        "r.csv",
        "user_id,item_id,rating\n1,2,3\n1,-2,3\n",
        3,
        "item_id",
        "expected a non-negative integer id, got '-2'",
    ),
    (
        "r.csv",
        "user_id,item_id,rating\n1,2,3\n ,2,3\n",
        3,
        "user_id",
        "expected a non-negative integer id, got ' '",
    ),
    (
        "r.csv",
        "user_id,item_id,rating\n1,2,3\n1,2,3,4\n",
        3,
        None,
        "expected 3 fields (user_id, item_id, rating, timestamp (optional)), found 4",
    ),
]


@pytest.mark.parametrize(("name", "content", "line", "column", "problem"), BAD)
def test_bad_input_names_file_line_and_column(tmp_path, name, content, line, column, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TableError) as info:
        read_ratings(path)
    err = info.value
    assert (err.path, err.line, err.column, err.problem) == (str(path), line, column, problem)
    where = f"{path}, line {line}" + (f", column {column!r}" if column else "")
    assert str(err) == f"{where}: {problem}"
    assert isinstance(err, ValueError)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere/u.data: no such file"):
        read_ratings("nowhere/u.data")


def test_read_table_kinds_extras_and_missing_ok(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        ",when,id,flag,score,note,aff_0,aff_1\n"
        "0,2019-11-24 00:00:34+00:00,3,1,,x,0.5,1\n"
        "1,2019-11-24 00:00:35+00:00,4,0,2.5,y,0,2\n"
    )
    kinds = {"when": "datetime", "id": "id", "flag": "binary", "score": "number", "note": "text"}
    frame = read_table(path, kinds, extra_columns={"aff_": "number"}, missing_ok=["score"])
    assert list(frame.columns) == ["when", "id", "flag", "score", "note", "aff_0", "aff_1"]
    assert frame["id"].tolist() == [3, 4] and frame["flag"].tolist() == [1, 0]
    assert np.isnan(frame["score"][0]) and frame["score"][1] == 2.5
    assert frame["aff_1"].tolist() == [1.0, 2.0] and frame["note"].tolist() == ["x", "y"]
    assert (frame["when"][1] - frame["when"][0]).total_seconds() == 1.0
    # Without missing_ok the empty score is an error on line 2.
    with pytest.raises(TableError, match=r"line 2, column 'score': missing value"):
        read_table(path, kinds)
    path.write_text(",when,id,flag,score,note\n0,yesterday-ish,3,2,1,x\n")
    with pytest.raises(TableError, match=r"line 2, column 'when': expected a date and time"):
        read_table(path, kinds)
    with pytest.raises(TableError, match=r"line 2, column 'flag': expected 0 or 1, got '2'"):
        read_table(path, {"flag": "binary"})
    with pytest.raises(ValueError, match="column 'x': unknown kind 'float'"):
        read_table(path, {"x": "float"})


def test_ratings_is_frozen(tmp_path):
    r = read_ratings(write_format(tmp_path, "csv"))
    assert isinstance(r, Ratings)
    with pytest.raises(AttributeError):
        r.format = "ml-1m"


def test_shipped_movielens_100k():
    path = recbole_ml100k_path()
    if path is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    r = read_ratings(path)
    assert (len(r), r.num_users, r.num_items) == (100_000, 943, 1682)
    assert sorted(set(r.rating.tolist())) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert r.format == "recbole" and r.has_timestamp

"""NaN and infinity never enter or leave a dataset: refused when written, when opened, and
by the loaders, with the file, row and column named."""

import re

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.data import generate as generate_module
from drpo_rl.data.loaders import (
    TableError,
    parse_kuairand,
    parse_kuairec,
    parse_movielens,
    parse_obd,
)
from drpo_rl.data.loaders.user_features import read_user_features

NAN, INF = float("nan"), float("inf")


def _logs(rows: int = 40) -> TensorDict:
    return TensorDict(
        {
            "observation": torch.randn(rows, 3),
            "action": torch.randn(rows, 2),  # a continuous action
            "behavior_log_prob": torch.full((rows,), -1.5),
            ("next", "reward"): torch.rand(rows, 1),
            ("next", "done"): torch.ones(rows, 1, dtype=torch.bool),
            "item": torch.arange(rows),
        },
        batch_size=[rows],
    )


@pytest.mark.parametrize(
    "key, index, value",
    [
        (("next", "reward"), (17, 0), NAN),
        ("observation", (3, 2), INF),
        ("action", (39, 1), -INF),
        ("behavior_log_prob", (0,), NAN),
    ],
)
def test_writing_refuses_non_finite_values(tmp_path, key, index, value):
    data = _logs()
    data[key][index] = value
    with pytest.raises(ValueError) as caught:
        OfflineLogs.from_tensordict(data, tmp_path / "logs")
    assert str(caught.value) == (
        f"{tmp_path / 'logs'}, column {key!r}: row {index[0]}: expected finite numbers, "
        f"found {value!r}; refusing to write a dataset holding NaN or infinity"
    )
    assert list(tmp_path.iterdir()) == []  # no dataset, no staging folder


def test_writing_names_the_env_and_step_of_collector_layout_logs(tmp_path):
    data = TensorDict(
        {"observation": torch.zeros(3, 5, 2), ("next", "reward"): torch.zeros(3, 5, 1)},
        batch_size=[3, 5],  # [env, time]
    )
    data["next", "reward"][1, 4] = NAN
    with pytest.raises(ValueError, match=re.escape("row [1, 4] ([env, time]): expected finite")):
        OfflineLogs.from_tensordict(data, tmp_path / "logs")


def _tamper(path, dtype, flat_index, value):
    array = np.memmap(path, dtype=dtype, mode="r+")
    array[flat_index] = value
    array.flush()
    del array


def test_opening_refuses_a_dataset_edited_to_hold_nan(tmp_path):
    logs = OfflineLogs.from_tensordict(_logs(), tmp_path / "logs")
    assert logs[:]["action"].isfinite().all()
    memmap = tmp_path / "logs" / "storage" / "action.memmap"
    _tamper(memmap, np.float32, 2 * 25 + 1, np.nan)  # row 25, second column
    with pytest.raises(ValueError) as caught:
        OfflineLogs(tmp_path / "logs")
    assert str(caught.value) == (
        f"{memmap}, column 'action': row 25: expected finite numbers, found nan; a dataset "
        "holds no NaN or infinity"
    )
    assert isinstance(caught.value, TableError) and caught.value.column == "action"


def test_opening_names_nested_keys_and_collector_layout(tmp_path):
    data = TensorDict({("next", "reward"): torch.zeros(4, 6, 1)}, batch_size=[4, 6])
    logs = OfflineLogs.from_tensordict(data, tmp_path / "logs")
    memmap = tmp_path / "logs" / "storage" / "next" / "reward.memmap"
    # Stored time-major, [time, env]: step 5 of env 2 is flat element 5 * 4 + 2.
    _tamper(memmap, np.float32, 5 * 4 + 2, np.inf)
    with pytest.raises(ValueError) as caught:
        OfflineLogs(logs.root)
    assert str(caught.value).startswith(
        f"{memmap}, column ('next', 'reward'): row [2, 5] ([env, time]): expected finite "
        "numbers, found inf"
    )


def test_large_finite_values_whose_sum_overflows_are_accepted(tmp_path):
    # The open check sums each tensor first; an overflowing sum must not be taken for NaN.
    data = TensorDict({("next", "reward"): torch.full((50, 1), 3e38)}, batch_size=[50])
    logs = OfflineLogs.from_tensordict(data, tmp_path / "logs")
    assert torch.equal(OfflineLogs(logs.root)[:]["next", "reward"], data["next", "reward"])


def test_generate_logs_fails_before_the_marker_when_the_env_yields_nan(tmp_path, monkeypatch):
    real_collect = generate_module.collect
    batches = []

    def nan_rewards(*args, **kwargs):
        for batch in real_collect(*args, **kwargs):
            if not batches:
                batch["next", "reward"][7] = NAN
            batches.append(batch.batch_size)
            yield batch

    monkeypatch.setattr(generate_module, "collect", nan_rewards)
    path = tmp_path / "logs"
    with pytest.raises(ValueError, match=r"column \('next', 'reward'\): row 7: .* found nan"):
        generate_logs(
            "RecSimBanditDiscrete",
            "medium",
            200,
            path=path,
            seed=0,
            num_envs=50,
            num_items=10,
            embedding_dim=4,
            progress=False,
        )
    assert batches, "the env was never stepped"
    assert list(tmp_path.iterdir()) == [] and not OfflineLogs.is_complete(path)


# ---------------------------------------------------------------- loaders
# A finite number in the file that float32 (the stored dtype) cannot hold is refused at its
# line; NaN and infinity spelled in the file are refused by envs.ratings.read_table.
BIG = "1e39"


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def _movielens(folder, value):
    path = _write(folder, "u.data", f"7\t30\t5\t100\n7\t12\t{value}\t50\n")
    return lambda: parse_movielens(path, rating_scale=(1.0, 1e40)), path, 2, "rating"


def _recbole(folder, value):
    path = _write(
        folder,
        "ml.inter",
        f"user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\t{value}\n",
    )
    return lambda: parse_movielens(path, rating_scale=(1.0, 1e40)), path, 3, "rating"


def _kuairec(folder, value):
    path = _write(
        folder,
        "small_matrix.csv",
        "user_id,video_id,timestamp,watch_ratio\n14,148,1593898068.3,0.7\n"
        f"14,183,1593898080.0,{value}\n",
    )
    return lambda: parse_kuairec(path), path, 3, "watch_ratio"


def _obd(folder, value):
    path = _write(
        folder,
        "all.csv",
        ",timestamp,item_id,position,click,propensity_score,user_feature_0,"
        "user-item_affinity_0\n"
        "0,2019-11-24 00:00:34+00:00,1,3,0,0.5,ab,0.0\n"
        f"1,2019-11-24 00:00:35+00:00,0,1,1,0.25,cd,{value}\n",
    )
    return lambda: parse_obd(path), path, 3, "user-item_affinity_0"


def _user_features(folder, value):
    path = _write(folder, "u.user", f"1|24|M|technician|85711\n2|{value}|F|other|94043\n")
    return lambda: read_user_features(path), path, 2, "age"


LOADERS = [_movielens, _recbole, _kuairec, _obd, _user_features]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__.strip("_"))
def test_loaders_refuse_numbers_beyond_float32(tmp_path, loader):
    parse, path, line, column = loader(tmp_path, BIG)
    with pytest.raises(TableError) as caught:
        parse()
    assert str(caught.value) == (
        f"{path}, line {line}, column {column!r}: expected a number within float32's range "
        "(|x| <= 3.4e+38), got 1e+39"
    )


@pytest.mark.parametrize("spelling", ["nan", "inf", "-Infinity"])
@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__.strip("_"))
def test_loaders_refuse_nan_and_infinity_in_files(tmp_path, loader, spelling):
    parse, path, line, column = loader(tmp_path, spelling)
    with pytest.raises(TableError, match=re.escape(f"{path}, line {line}, column {column!r}:")):
        parse()


def test_kuairand_refuses_non_finite_times(tmp_path):
    path = _write(tmp_path, "log.csv", "user_id,video_id,time_ms,is_click\n0,1,5,1\n0,2,inf,0\n")
    with pytest.raises(TableError, match=re.escape(f"{path}, line 3, column 'time_ms'")):
        parse_kuairand(path)


def test_loaders_accept_values_at_float32_edge(tmp_path):
    parse, *_ = _obd(tmp_path, "3e38")
    assert parse().data["observation"][1, -1].item() == pytest.approx(3e38, rel=1e-6)


def test_kuairec_dropping_every_row_is_a_clear_error(tmp_path):
    parse, path, *_ = _kuairec(tmp_path, "1.0")
    path.write_text("user_id,video_id,timestamp,watch_ratio\n14,148,,0.7\n14,183,nan,1.2\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: missing_timestamps='drop' removes")):
        parse_kuairec(path, missing_timestamps="drop")

"""drpo-rl train: a made-up log goes through load -> train -> logged value -> recommend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type

import drpo_rl
from drpo_rl import offline_training
from drpo_rl.cli import main
from drpo_rl.data import load_interactions
from drpo_rl.offline_training import logged_value, train_on_logs


def made_up_csv(path, rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """String ids, no propensity column, one bad row, a gap of a week in the timestamps;
    users like the items of their own group."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 30, rows)
    item = rng.integers(0, 12, rows)
    time = np.arange(rows, dtype=float) * 60.0
    time[rows // 2 :] += 7 * 86_400.0
    frame = pd.DataFrame(
        {
            "member": [f"m-{u}" for u in user],
            "product": [f"P{i:02d}" for i in item],
            "liked": ((user % 3) == (item % 3)).astype(float),
            "when": time,
        }
    )
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines.insert(11, "m-1,P03,,600.5")  # no reward: the bad row (data row 11)
    path.write_text("\n".join(lines) + "\n")
    return frame


COLUMNS = {"user": "member", "item": "product", "reward": "liked", "time": "when"}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("byol")
    frame = made_up_csv(folder / "log.csv")
    logs = load_interactions(
        folder / "log.csv", folder / "logs", columns=COLUMNS, bad_rows="skip", chunk_size=100
    )
    return folder, frame, logs


def test_load_train_value_recommend(loaded, capsys):
    folder, frame, logs = loaded
    assert logs.metadata["rows_skipped"]["by_column"] == {"liked": 1}
    run = folder / "run"
    argv = ["train", "--logs", str(folder / "logs"), "--out", str(run), "--steps", "60"]
    assert main([*argv, "--eval-points", "3", "--no-progress", "--set", "drpo.kappa=0.5"]) == 0
    printed = capsys.readouterr().out
    assert "drpo: 60 steps on 480 rows" in printed
    assert "off-policy estimates: none (the logs carry no propensities" in printed
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "logs",
        "metrics.json",
        "policy.pt",
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [p["step"] for p in metrics["curve"]] == [20, 40, 60]
    assert all(0 <= p["eval_validation_hit_rate"] <= 1 for p in metrics["curve"])
    best = max(metrics["curve"], key=lambda p: p["eval_validation_hit_rate"])
    assert metrics["best"]["step"] == best["step"]
    # The logged value is the mean reward of the test split (the last 10% of the rows).
    test = frame.sort_values("when").iloc[-60:]
    logged = metrics["test"]["logged"]
    assert logged["value"] == pytest.approx(test["liked"].mean())
    assert logged["low"] < logged["value"] < logged["high"] and logged["rows"] == 60
    assert metrics["test"]["off_policy"] == {
        "skipped": "the logs carry no propensities ('behavior_log_prob')"
    }
    # The CSV logger of TorchRL wrote the curve.
    assert (run / "logs" / "scalars" / "eval_validation_hit_rate.csv").is_file()
    # Recommendations come back in the raw id space of the file.
    recommender = drpo_rl.load_policy(run)
    top = recommender.recommend([["P01", "P04"], [], ["P02"]], k=4)
    assert [len(row) for row in top] == [4, 4, 4]
    assert all(item in set(frame["product"]) for row in top for item in row)
    with pytest.raises(ValueError, match=r"history\[0\]: item 'P99' is not an item of the logs"):
        recommender.recommend([["P99"]], k=2)


def test_resume_gives_the_uninterrupted_run(loaded, tmp_path, monkeypatch):
    _, _, logs = loaded
    options = dict(algorithm="bc", steps=40, eval_points=4, patience=None, progress=False)
    whole = train_on_logs(logs, tmp_path / "whole", **options)
    calls = []
    original = offline_training._Tracker.checkpoint

    def interrupted(self, training):
        original(self, training)
        calls.append(training["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(offline_training._Tracker, "checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_on_logs(logs, tmp_path / "cut", **options)
    monkeypatch.setattr(offline_training._Tracker, "checkpoint", original)
    with pytest.raises(ValueError, match="an unfinished run is there; pass --resume"):
        train_on_logs(logs, tmp_path / "cut", **options)
    resumed = train_on_logs(logs, tmp_path / "cut", resume=True, **options)
    assert resumed["curve"] == whole["curve"]
    a = torch.load(tmp_path / "whole" / "policy.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "policy.pt", weights_only=True)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="holds a finished run"):
        train_on_logs(logs, tmp_path / "cut", resume=True, **options)


def test_early_stopping_keeps_the_best_policy(loaded, tmp_path):
    _, _, logs = loaded
    # A learning rate too small to change the ranking: no evaluation beats the first.
    metrics = train_on_logs(
        logs,
        tmp_path / "run",
        algorithm="bc",
        steps=100,
        eval_points=10,
        patience=2,
        lr=1e-12,
        progress=False,
        logger="none",
    )
    assert metrics["stopped_early"] and metrics["steps_done"] == 30
    assert metrics["best"]["step"] == 10


def test_algorithm_needing_propensities_is_refused(loaded, tmp_path):
    _, _, logs = loaded
    with pytest.raises(ValueError, match="'bppo' needs propensities .* no behavior_log_prob"):
        train_on_logs(logs, tmp_path / "run", algorithm="bppo", steps=10)
    assert (
        main(
            ["train", "--logs", str(logs.root), "--out", str(tmp_path / "r"), "--algorithm", "ppo"]
        )
        == 2
    )  # online: not trainable on logs


def test_logged_value_interval_covers_the_cluster_structure():
    # Two trajectories of very different means: the interval is wide, as it must be.
    rows_reward = torch.tensor([1.0] * 50 + [0.0] * 50).unsqueeze(-1)
    from tensordict import TensorDict

    rows = TensorDict(
        {
            ("next", "reward"): rows_reward,
            ("collector", "traj_ids"): torch.tensor([0] * 50 + [1] * 50),
        },
        [100],
    )
    clustered = logged_value(rows)
    independent = logged_value(rows.exclude(("collector", "traj_ids")))
    assert clustered["value"] == independent["value"] == 0.5
    assert clustered["high"] - clustered["low"] > 3 * (independent["high"] - independent["low"])


def test_five_commands_csv_in_recommendations_out(tmp_path, capsys):
    frame = made_up_csv(tmp_path / "log.csv", rows=300)
    columns = [f"--column={role}={name}" for role, name in COLUMNS.items()]
    assert main(["load", str(tmp_path / "log.csv"), str(tmp_path / "logs"), *columns]) == 2
    assert "data row 11: expected a reward in [0, 1], got ''" in capsys.readouterr().err
    loaded = ["load", str(tmp_path / "log.csv"), str(tmp_path / "logs"), *columns]
    assert main([*loaded, "--bad-rows", "skip"]) == 0
    assert "skipped 1 bad rows {'liked': 1}" in capsys.readouterr().out
    run = tmp_path / "run"
    train = ["train", "--logs", str(tmp_path / "logs"), "--out", str(run), "--steps", "20"]
    assert main([*train, "--eval-points", "2", "--no-progress", "--logger", "none"]) == 0
    (tmp_path / "history.csv").write_text("user,item\nm-7,P01\nm-7,P02\nnew,P05\n")
    recommend = ["recommend", str(run), "--history", str(tmp_path / "history.csv"), "--k", "3"]
    assert (
        main([*recommend, "--out", str(tmp_path / "top.csv"), "--export", str(run / "m.pt2")]) == 0
    )
    top = pd.read_csv(tmp_path / "top.csv", dtype=str)
    assert list(top.columns) == ["user", "rank", "item"]
    assert top["user"].tolist() == ["m-7"] * 3 + ["new"] * 3
    assert set(top["item"]) <= set(frame["product"])
    expected = drpo_rl.load_policy(run).recommend([["P01", "P02"], ["P05"]], k=3)
    assert top["item"].tolist() == expected[0] + expected[1]
    assert (run / "m.pt2").is_file()


def test_off_policy_estimates_on_the_test_split(tmp_path):
    """With logged propensities (uniform over 12 items here) the run reports the trained
    policy's off-policy estimates on the test split; SNIPS of a deterministic policy under
    uniform logging is the mean reward of the test rows where it picks the logged item."""
    frame = made_up_csv(tmp_path / "log.csv")
    frame["p"] = 1 / 12
    frame.to_csv(tmp_path / "log.csv", index=False)
    logs = load_interactions(
        tmp_path / "log.csv", tmp_path / "logs", columns={**COLUMNS, "propensity": "p"}
    )
    metrics = train_on_logs(logs, tmp_path / "run", algorithm="bc", steps=30, progress=False)
    estimates = metrics["test"]["off_policy"]
    assert {"ips", "snips", "dr"} <= set(estimates)
    policy = drpo_rl.load_policy(tmp_path / "run").policy
    rows = logs[:]
    test = rows[rows["split"] == 2]
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        picked = policy(test.select("observation").clone())["action"]
    match = picked == test["action"]
    assert match.any()
    reward = test["next", "reward"].reshape(-1)
    snips = estimates["snips"]
    assert snips["value"] == pytest.approx(float(reward[match].mean()), rel=1e-5)
    assert snips["low"] <= snips["value"] <= snips["high"]
    assert estimates["ips"]["value"] == pytest.approx(float((reward * match).mean() * 12), rel=1e-5)

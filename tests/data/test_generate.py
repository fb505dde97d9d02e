"""generate_logs: stored keys and values, metadata, reproducibility, re-opening, sessions,
and generations killed part-way."""

import json
import math
import multiprocessing
import os
import signal
import time

import pytest
import torch
from torchrl.data import SliceSampler

from drpo_rl.data import AGENT_IDS, LOG_KEYS, OfflineLogs, generate_logs
from drpo_rl.data import generate as generate_module
from envs import make_env

SMALL = {"num_items": 20, "embedding_dim": 8}


def _bandit(path, scenario="medium", n=3000, seed=0, **kwargs):
    options = {**SMALL, **kwargs}
    return generate_logs(
        "RecSimBanditDiscrete", scenario, n, path=path, seed=seed, progress=False, **options
    )


@pytest.fixture(scope="module")
def medium_logs(tmp_path_factory):
    return _bandit(tmp_path_factory.mktemp("medium") / "logs", n=6000, num_envs=1000)


def test_stored_keys_dtypes_and_shapes(medium_logs):
    td = medium_logs[:]
    stored = set(td.keys(True, True))
    assert stored == set(LOG_KEYS)
    assert "item_rewards" not in td.keys() and ("next", "item_rewards") not in stored
    n = 6000
    assert len(medium_logs) == n and td.batch_size == (n,)
    expect = {
        "observation": (torch.float32, (n, 8)),
        "action": (torch.int64, (n,)),
        "behavior_log_prob": (torch.float32, (n,)),
        "behavior_agent": (torch.int64, (n,)),
        ("next", "reward"): (torch.float32, (n, 1)),
        ("next", "done"): (torch.bool, (n, 1)),
        ("next", "terminated"): (torch.bool, (n, 1)),
        ("next", "truncated"): (torch.bool, (n, 1)),
        ("next", "item"): (torch.int64, (n,)),
        ("next", "latent_reward"): (torch.float32, (n, 1)),
    }
    for key, (dtype, shape) in expect.items():
        assert (td[key].dtype, td[key].shape) == (dtype, shape), key
    # the bandit: every row is a whole episode, the shown item is the action
    assert td["next", "done"].all() and td["next", "terminated"].all()
    assert not td["next", "truncated"].any()
    assert torch.equal(td["next", "item"], td["action"])
    assert ((td["next", "reward"] >= 0) & (td["next", "reward"] <= 1)).all()
    assert (td["behavior_log_prob"] <= 0).all()


def test_metadata_records_how_to_reproduce(medium_logs, tmp_path):
    meta = medium_logs.metadata
    on_disk = json.loads((medium_logs.root / "metadata.json").read_text())
    assert on_disk == meta
    assert meta["env"]["name"] == "RecSimBanditDiscrete"
    assert meta["env"]["config"]["num_items"] == 20
    assert meta["env"]["config"]["action_type"] == "item"
    assert meta["scenario"] == {
        "name": "medium",
        "weights": {"expert": 0.1, "suboptimal": 0.6, "random": 0.3},
    }
    assert meta["behavior"]["agents"]["expert"] == {"weight": 0.1, "temperature": 0.02}
    assert meta["seed"] == 0 and meta["num_samples"] == 6000 and meta["num_envs"] == 1000
    assert meta["layout"] == "rows" and meta["storage"]["shape"] == [6000]
    assert meta["agent_ids"] == {"expert": 0, "suboptimal": 1, "random": 2}
    assert {"torch", "torchrl", "tensordict", "drpo-rl", "python"} <= set(meta["versions"])
    assert meta["format_version"] == 1


def test_agent_shares_follow_the_weights_and_experts_earn_more(medium_logs):
    td = medium_logs[:]
    n = len(medium_logs)
    reward = {}
    for name, w in {"expert": 0.1, "suboptimal": 0.6, "random": 0.3}.items():
        rows = td["behavior_agent"] == AGENT_IDS[name]
        assert abs(rows.float().mean().item() - w) < 5 * math.sqrt(w * (1 - w) / n), name
        reward[name] = td["next", "reward"][rows].mean().item()
    assert reward["expert"] > reward["random"] + 0.3
    # the log-propensity is the mixture's, not the acting agent's (expert rows would be ~0)
    expert_rows = td["behavior_agent"] == AGENT_IDS["expert"]
    assert td["behavior_log_prob"][expert_rows].max() < math.log(0.1 + 0.6 + 0.3)


def test_same_seed_same_logs_other_seed_other_logs(tmp_path):
    a = _bandit(tmp_path / "a", n=1500, seed=5)[:]
    b = _bandit(tmp_path / "b", n=1500, seed=5)[:]
    c = _bandit(tmp_path / "c", n=1500, seed=6)[:]
    for key in LOG_KEYS:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["action"], c["action"])
    assert not torch.equal(a["observation"], c["observation"])


def test_reopening_loads_without_generating(tmp_path, monkeypatch):
    first = _bandit(tmp_path / "logs", n=1000)[:]

    def no_generation(*args, **kwargs):
        raise AssertionError("generate_logs collected again instead of loading")

    monkeypatch.setattr(generate_module, "collect", no_generation)
    again = _bandit(tmp_path / "logs", n=1000, batch_size=16)
    assert again.sample().shape == (16,)
    for key in LOG_KEYS:
        assert torch.equal(again[:][key], first[key]), key


def test_reopening_with_other_settings_names_every_difference(tmp_path):
    _bandit(tmp_path / "logs", n=1000)
    with pytest.raises(ValueError, match=r"env\.config\.num_items: stored 20, requested 30"):
        _bandit(tmp_path / "logs", n=1000, num_items=30)
    with pytest.raises(ValueError) as info:
        _bandit(tmp_path / "logs", scenario="extreme", n=2000)
    message = str(info.value)
    assert "scenario.name: stored 'medium', requested 'extreme'" in message
    assert "scenario.weights.random: stored 0.3, requested 0.9" in message
    assert "num_samples: stored 1000, requested 2000" in message
    with pytest.raises(ValueError, match="seed: stored 0, requested 1"):
        _bandit(tmp_path / "logs", n=1000, seed=1)
    with pytest.raises(
        ValueError, match=r"env\.name: stored 'RecSimBanditDiscrete', requested 'RecSimBandit'"
    ):
        generate_logs(
            "RecSimBandit", "medium", 1000, path=tmp_path / "logs", seed=0, progress=False, **SMALL
        )
    assert len(OfflineLogs(tmp_path / "logs")) == 1000  # untouched


def test_non_multiple_bandit_sample_count_is_exact(tmp_path):
    logs = _bandit(tmp_path / "logs", n=1234, num_envs=100)
    assert len(logs) == 1234 and logs.metadata["storage"]["shape"] == [1234]


def test_embedding_env_logs_item_embeddings(tmp_path):
    logs = generate_logs(
        "RecSimBandit",
        {"expert": 0.5, "random": 0.5},
        800,
        path=tmp_path / "logs",
        seed=0,
        progress=False,
        **SMALL,
    )
    td = logs[:]
    catalogue = make_env("RecSimBandit", **SMALL).catalogue
    assert td["action"].shape == (800, 8) and td["action"].dtype == torch.float32
    torch.testing.assert_close(td["action"], catalogue.embeddings[td["next", "item"]])


def test_session_logs_keep_trajectories_for_slice_sampling(tmp_path):
    num_envs, steps = 16, 25
    logs = generate_logs(
        "UserSession",
        "medium",
        num_envs * steps,
        path=tmp_path / "logs",
        seed=0,
        num_envs=num_envs,
        progress=False,
        batch_size=40,
        sampler=SliceSampler(slice_len=4, traj_key=("collector", "traj_ids")),
        max_length=6,
        **SMALL,
    )
    meta = logs.metadata
    assert meta["layout"] == "time_env" and meta["storage"]["shape"] == [steps, num_envs]
    assert meta["env"]["config"]["max_length"] == 6
    data = logs[:]  # presented as collected: [env, time]
    assert data.shape == (num_envs, steps)
    ids = data["collector", "traj_ids"]
    done = data["next", "done"].squeeze(-1)
    # along time, an env's trajectory id changes exactly after its episode ends
    changes = ids[:, 1:] != ids[:, :-1]
    assert torch.equal(changes, done[:, :-1])
    assert changes.any()
    # no session outlasts max_length
    assert int(torch.unique(ids, return_counts=True)[1].max()) <= 6
    step = data["observation"][..., -1]  # step / max_length, 0 at each session start
    assert torch.equal(step[:, 1:][changes], torch.zeros(int(changes.sum())))
    assert torch.equal(step[:, 0], torch.zeros(num_envs))
    for _ in range(3):
        batch = logs.sample()
        assert batch.shape == (40,)
        for piece in batch.split(4):
            assert (piece["collector", "traj_ids"] == piece["collector", "traj_ids"][0]).all()
            assert piece["observation"][:, -1].diff().gt(0).all()


def test_session_sample_count_must_fill_every_user_stream(tmp_path):
    with pytest.raises(ValueError, match="multiple of num_envs=16"):
        generate_logs(
            "UserSession",
            "clean",
            100,
            path=tmp_path / "logs",
            seed=0,
            num_envs=16,
            progress=False,
            **SMALL,
        )
    assert not (tmp_path / "logs").exists()


def test_bad_arguments_raise_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="unknown scenario 'mediocre'"):
        _bandit(tmp_path / "logs", scenario="mediocre")
    with pytest.raises(ValueError, match="num_samples"):
        _bandit(tmp_path / "logs", n=0)
    with pytest.raises(ValueError, match="unknown environment"):
        generate_logs("Nope", "clean", 10, path=tmp_path / "logs", seed=0)
    with pytest.raises(ValueError, match="nonexistent_field"):
        _bandit(tmp_path / "logs", nonexistent_field=3)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": -5}, "batch_size: expected an integer >= 1 or None, got -5"),
        ({"batch_size": True}, "batch_size: expected an integer >= 1 or None, got True"),
        ({"num_envs": 0}, "num_envs: expected an integer >= 1 or None, got 0"),
        ({"seed": 1.5}, "seed: expected an integer, got 1.5"),
        ({"device": "tpu"}, "device 'tpu' is not a device name; valid devices here: cpu"),
        ({"device": "cpu:3"}, "device 'cpu:3': there is one CPU device, 'cpu'"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_arguments_are_checked_before_any_env_is_built(tmp_path, monkeypatch, changes, message):
    built = []
    monkeypatch.setattr("envs.make_env", lambda *args, **kwargs: built.append(args))
    with pytest.raises(ValueError, match=message):
        _bandit(tmp_path / "logs", **changes)
    assert built == [] and os.listdir(tmp_path) == []


def _generate_and_hang(path, written):
    real = generate_module.collect

    def slow(*args, **kwargs):
        for batch in real(*args, **kwargs):
            yield batch
            written.set()
            time.sleep(60)

    generate_module.collect = slow
    _bandit(path, n=4000, num_envs=100)


def test_generation_killed_part_way_does_not_load_and_is_regenerated(tmp_path):
    context = multiprocessing.get_context("fork")
    written = context.Event()
    child = context.Process(target=_generate_and_hang, args=(tmp_path / "logs", written))
    child.start()
    try:
        assert written.wait(timeout=120)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode == -signal.SIGKILL
    (partial,) = os.listdir(tmp_path)
    assert partial.startswith(".logs.partial-")
    assert any((tmp_path / partial / "storage").iterdir())  # rows were being written
    assert not OfflineLogs.is_complete(tmp_path / "logs")
    with pytest.raises(FileNotFoundError):
        OfflineLogs(tmp_path / "logs")
    logs = _bandit(tmp_path / "logs", n=4000, num_envs=100)
    assert len(logs) == 4000
    assert os.listdir(tmp_path) == ["logs"]

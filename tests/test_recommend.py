"""drpo_rl.load_policy: top-k raw item ids from a trained run, batched, and exported."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tensordict import TensorDict

import drpo_rl
from drpo_rl import serving
from drpo_rl.data import OfflineLogs, load_interactions
from drpo_rl.data.loaders.store import ITEM_FEATURES_FILE
from drpo_rl.offline_training import train_on_logs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def item_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("item-run")
    g = torch.Generator().manual_seed(0)
    rows = 400
    user = torch.randint(0, 20, (rows,), generator=g)
    item = torch.randint(0, 15, (rows,), generator=g)
    frame = pd.DataFrame(
        {
            "user": [f"u{int(u)}" for u in user],
            "item": [f"item/{int(i) * 7}" for i in item],  # raw ids that are not indices
            "reward": ((user + item) % 2 == 0).float().numpy(),
            "time": range(rows),
        }
    )
    logs = load_interactions(frame, folder / "logs", history_length=3)
    train_on_logs(logs, folder / "run", algorithm="bc", steps=30, eval_points=2, progress=False)
    return folder / "run", logs


def test_item_policy_recommends_its_top_logits_in_raw_ids(item_run):
    run, logs = item_run
    recommender = drpo_rl.load_policy(run)
    history = [["item/7", "item/14"], [], ["item/0"], ["item/98", "item/7", "item/0", "item/21"]]
    observation = recommender.observations(history)
    # The observation is the logs' layout: a row of the logs gives the same one.
    stored = logs[:]
    row = int(torch.nonzero(stored["history"][:, 1] >= 0)[0])
    ids = logs.metadata["item_ids"]
    items = [ids[i] for i in stored["history"][row].tolist() if i >= 0][::-1]
    rewards = [stored["history_reward"][row, j].item() for j in range(len(items))][::-1]
    again = recommender.observations([items], rewards=[rewards])
    mine = stored["observation"][row].clone()
    mine[-1] = len(items) / logs.metadata["max_steps"]  # step: the history's length
    assert torch.allclose(again[0], mine)
    logits = recommender.policy.module[0].module(observation)
    expected = [[recommender.item_ids[i] for i in row] for row in logits.topk(5).indices.tolist()]
    assert recommender.recommend(history, k=5) == expected
    assert recommender.recommend(history, k=5, batch_size=3) == expected
    assert all(isinstance(i, str) and i.startswith("item/") for row in expected for i in row)


@pytest.mark.parametrize("device", DEVICES)
def test_exported_module_gives_the_same_top_k(item_run, tmp_path, device):
    run, _ = item_run
    recommender = drpo_rl.load_policy(run, device=device)
    path = recommender.export(tmp_path / "top5.pt2", k=5)
    exported = torch.export.load(path).module()
    for batch in (1, 7):
        observation = torch.rand(batch, recommender.config["obs_dim"], device=device)
        want = recommender.top_k_module(5)(observation)
        got = exported(observation)
        assert torch.equal(got[1], want[1]) and torch.allclose(got[0], want[0])


def test_gaussian_policy_recommends_the_nearest_items(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(1)
    items = torch.randn(11, 4, generator=g)
    rows = 300
    shown = torch.randint(0, 11, (rows,), generator=g)
    observation = torch.randn(rows, 6, generator=g)
    data = TensorDict(
        {
            "observation": observation,
            "action": items[shown],
            ("next", "item"): shown,
            ("next", "reward"): (observation[:, :1] > 0).float(),
            ("next", "done"): torch.ones(rows, 1, dtype=torch.bool),
            ("next", "terminated"): torch.ones(rows, 1, dtype=torch.bool),
            ("next", "truncated"): torch.zeros(rows, 1, dtype=torch.bool),
            ("next", "observation"): torch.randn(rows, 6, generator=g),
            "split": torch.arange(rows) % 3,
        },
        [rows],
    )
    logs = OfflineLogs.from_tensordict(data, tmp_path / "logs", {"num_items": 11})
    torch.save(items, tmp_path / "logs" / ITEM_FEATURES_FILE)
    train_on_logs(logs, tmp_path / "run", algorithm="bc", steps=20, eval_points=2, progress=False)
    monkeypatch.setattr(serving, "_CHUNK_ITEMS", 3)  # several chunks of the catalogue
    recommender = drpo_rl.load_policy(tmp_path / "run")
    query = torch.randn(5, 6, generator=g)
    loc = recommender.policy.module[0].module(query)[0]
    cosine = (
        torch.nn.functional.normalize(loc, dim=-1) @ torch.nn.functional.normalize(items, dim=-1).T
    )
    module = recommender.top_k_module(4)
    assert torch.equal(module(query)[1], cosine.topk(4).indices)
    path = recommender.export(tmp_path / "nearest.pt2", k=4)
    assert torch.equal(torch.export.load(path).module()(query)[1], cosine.topk(4).indices)


def test_not_a_run_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"config.json: missing; .* is not a finished"):
        drpo_rl.load_policy(tmp_path)


def test_user_features_enter_the_recommenders_observation(tmp_path):
    frame = pd.DataFrame(
        {
            "user": ["a", "b", "a", "b"],
            "item": ["x", "y", "y", "z"],
            "reward": [1.0, 0.0, 1.0, 1.0],
            "time": [1, 2, 3, 4],
        }
    )
    users = pd.DataFrame({"user": ["b", "a"], "age": [40.0, 20.0], "vip": [1.0, 0.0]})
    logs = load_interactions(
        frame, tmp_path / "logs", user_features=users, history_length=1, split=(0.5, 0.25, 0.25)
    )
    train_on_logs(logs, tmp_path / "run", algorithm="bc", steps=4, eval_points=1, progress=False)
    recommender = drpo_rl.load_policy(tmp_path / "run")
    observation = recommender.observations([["x"], ["y"]], users=["a", "b"])
    assert observation[:, -2:].tolist() == [[20.0, 0.0], [40.0, 1.0]]
    assert torch.equal(observation[0], logs[:]["observation"][1])  # a's second row
    with pytest.raises(ValueError, match="users: the policy's observation holds user features"):
        recommender.recommend([["x"]], k=2)

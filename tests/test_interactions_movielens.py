"""MovieLens-100K logs -> train DRPO -> evaluate in the MovieLens100K env: one layout."""

from __future__ import annotations

import pytest
import torch

import drpo_rl
from drpo_rl.data import load_movielens
from drpo_rl.data.loaders import recbole_ml100k_path
from drpo_rl.evaluation import evaluate
from drpo_rl.offline_training import train_on_logs
from envs import EnvSpec, make_env

pytestmark = pytest.mark.skipif(
    recbole_ml100k_path() is None, reason="the MovieLens-100K ratings ship with recbole"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ml100k")
    # A small fit (seconds), without observation noise so that layouts compare exactly.
    overrides = dict(embedding_dim=4, fit_steps=20, cache_dir=str(folder), observation_noise=0.0)
    env = make_env("MovieLens100K", seed=0, **overrides)
    logs = load_movielens(recbole_ml100k_path(), folder / "logs", world=env)
    return folder, overrides, env, logs


def test_logs_take_the_env_layout(world):
    _, _, env, logs = world
    rows, meta = logs[:], logs.metadata
    d, k, length = env.config.embedding_dim, env.config.history_length, env.config.max_length
    layout = env.observation_layout
    assert rows["observation"].shape == (100_000, env.observation_spec["observation"].shape[-1])
    assert [(p["name"], p["columns"]) for p in meta["observation_layout"]] == [
        (name, [part.start, part.stop]) for name, part in layout.items()
    ]
    users, items = env.fitted.users, env.catalogue.embeddings
    obs = rows["observation"]
    assert torch.equal(obs[:, layout["preference"]], users[rows["user"]])
    # Sessions of at most max_length, history empty at their start, as the env's.
    step = (obs[:, layout["step"]].squeeze(-1) * length).round().long()
    assert step.max() == length - 1
    first = step == 0
    assert (obs[first][:, layout["history_items"]] == 0).all()
    # Later steps show the fitted embeddings of the session's previous items, newest first.
    later = torch.nonzero(step >= 2).squeeze(-1)[:50]
    shown = obs[later][:, layout["history_items"]].reshape(-1, k, d)
    assert torch.equal(shown[:, 0], items[rows["action"][later - 1]])
    assert torch.equal(shown[:, 1], items[rows["action"][later - 2]])
    rewards = obs[later][:, layout["history_rewards"]]
    assert torch.equal(rewards[:, 0], rows["next", "reward"][later - 1].squeeze(-1))
    # A full session ends terminated (the env's users leave), a user's last one truncated.
    end = rows["next", "done"].squeeze(-1)
    assert torch.equal(rows["next", "terminated"].squeeze(-1), end & (step == length - 1))
    assert meta["world"]["env"] == "MovieLens100K" and sum(meta["splits"]["rows"]) == 100_000
    assert abs(meta["splits"]["rows"][0] - 80_000) < 100  # ties in time stay in one split
    # The env, reset and stepped, lays its observation out by the same rule.
    env.reset()
    first_obs = env.reset()["observation"][0]
    assert (first_obs[layout["history_items"]] == 0).all() and first_obs[layout["step"]] == 0
    assert torch.cdist(first_obs[layout["preference"]][None], users).min() < 1e-3  # a fitted user
    out = env.step(env.reset().set("action", torch.tensor([7])))["next"]
    assert torch.equal(out["observation"][0, layout["history_items"]][:d], items[7])
    assert out["observation"][0, layout["history_rewards"]][0] == out["reward"][0, 0]
    assert out["observation"][0, layout["step"]] == pytest.approx(1 / length)


def test_train_drpo_on_the_logs_and_evaluate_in_the_env(world):
    folder, overrides, env, logs = world
    metrics = train_on_logs(
        logs, folder / "run", algorithm="drpo", steps=100, eval_points=2, progress=False
    )
    assert metrics["validation_rows"] == logs.metadata["splits"]["rows"][1]
    assert metrics["test"]["logged"]["rows"] == logs.metadata["splits"]["rows"][2]
    recommender = drpo_rl.load_policy(folder / "run")
    spec = EnvSpec("MovieLens100K", overrides)
    found = evaluate(recommender.policy, spec, num_users=64, seed=1)
    again = evaluate(recommender.policy, spec, num_users=64, seed=1)
    assert found == again and 0 <= found["reward"] <= 1 and found["length"] >= 1
    # The recommender speaks the file's movie ids and the env's layout.
    top = recommender.recommend([[50, 172, 133]], k=5, users=[1])
    assert len(top[0]) == 5 and set(top[0]) <= set(env.fitted.item_ids.tolist())
    observation = recommender.observations([[50, 172, 133]], users=[1])
    assert observation.shape == (1, env.observation_spec["observation"].shape[-1])

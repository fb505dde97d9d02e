"""UserSession dynamics: reduction to the bandit, drift, fatigue, leave model, history."""

import math

import pytest
import torch
from tensordict import TensorDict

from envs import make_env as _make_env

# These tests read the full reward table, opted into on these small catalogues.
PRIVILEGED = ("latent_reward", "item_rewards")


def make_env(*args, **kwargs):
    return _make_env(*args, privileged=PRIVILEGED, **kwargs)


B = 5


def test_horizon_one_without_drift_is_the_bandit():
    bandit = make_env("RecSimBanditDiscrete", num_envs=B, seed=4)
    session = make_env(
        "UserSession", num_envs=B, seed=4, max_length=1, drift_rate=0.0, fatigue_strength=0.0
    )
    d = bandit.config.embedding_dim
    for _ in range(3):  # several episodes: resets draw the same users
        td_b, td_s = bandit.reset(), session.reset()
        torch.testing.assert_close(td_s["observation"][:, :d], td_b["observation"], rtol=0, atol=0)
        assert not td_s["observation"][:, d:].any()  # empty history, step 0
        torch.testing.assert_close(td_s["item_rewards"], td_b["item_rewards"], rtol=0, atol=0)
        action = torch.randint(0, 100, (B,))
        td_b["action"], td_s["action"] = action, action
        nb, ns = bandit.step(td_b)["next"], session.step(td_s)["next"]
        for key in ("reward", "latent_reward", "item", "item_rewards", "done"):
            torch.testing.assert_close(ns[key], nb[key], rtol=0, atol=0)
        assert ns["done"].all()
        # The session's one step reaches its length cap: truncated, not terminated.
        assert ns["truncated"].all() and not ns["terminated"].any()


def test_item_rewards_follow_preference_and_fatigue_formula():
    env = make_env("UserSession", num_envs=B, seed=2, fatigue_strength=0.7, drift_rate=0.3)
    td = env.reset()
    for step in range(4):
        td["action"] = torch.full((B,), 7 * step + 1)
        td = env.step(td)["next"]
        state = env.latent_state()
        e = env.catalogue.embeddings.double()
        u = state["preference"].double()
        cos = (u @ e.T) / (u.norm(dim=-1, keepdim=True) * e.norm(dim=-1))
        fatigue = state["fatigue"].double()[:, env.catalogue.cluster]
        want = torch.exp(-(1 - cos) / (2 * 0.5**2)) * torch.exp(-0.7 * fatigue)
        torch.testing.assert_close(td["item_rewards"].double(), want, rtol=1e-5, atol=1e-6)


def test_drift_moves_preference_toward_consumed_item():
    env = make_env("UserSession", num_envs=B, seed=0, drift_rate=0.5, patience=math.inf)
    td = env.reset()
    u_before = env.latent_state()["preference"]
    item = torch.tensor([3, 3, 50, 50, 99])
    target = torch.nn.functional.normalize(env.catalogue.embeddings[item], dim=-1)
    td["action"] = item
    r = env.step(td)["next", "reward"][:, 0]
    u_after = env.latent_state()["preference"]
    # The rule: normalise((1 - a r) u + a r e/|e|), a = drift_rate, r = observed reward.
    want = torch.nn.functional.normalize(
        (1 - 0.5 * r[:, None]) * u_before + 0.5 * r[:, None] * target, dim=-1
    )
    torch.testing.assert_close(u_after, want, rtol=1e-5, atol=1e-6)
    moved = r > 0
    assert moved.any()
    assert ((u_after * target).sum(-1)[moved] > (u_before * target).sum(-1)[moved]).all()


def test_fatigue_lowers_rewards_of_a_repeated_cluster():
    env = make_env(
        "UserSession",
        num_envs=B,
        seed=1,
        drift_rate=0.0,
        fatigue_strength=0.5,
        fatigue_decay=0.5,
        patience=math.inf,
        max_length=10,
    )
    td = env.reset()
    first = td["item_rewards"].clone()
    item = torch.zeros(B, dtype=torch.int64)
    c = env.catalogue.cluster[0]
    same = env.catalogue.cluster == c
    for k in range(1, 4):
        td["action"] = item
        td = env.step(td)["next"]
        level = sum(0.5**j for j in range(k))  # f <- 0.5 f + 1
        torch.testing.assert_close(
            td["item_rewards"][:, same], first[:, same] * math.exp(-0.5 * level)
        )
        torch.testing.assert_close(td["item_rewards"][:, ~same], first[:, ~same])


def test_leave_model_patience_and_max_length():
    env = make_env(
        "UserSession",
        num_envs=B,
        seed=3,
        patience=1.5,
        reward_noise=0.0,
        drift_rate=0.0,
        fatigue_strength=0.0,
        max_length=50,
    )
    td = env.reset()
    worst = td["item_rewards"].argmin(-1)
    patience = torch.full((B,), 1.5)
    steps = 0
    while not td["done"].all() and steps < 3:
        steps += 1
        td["action"] = worst
        td = env.step(td)["next"]
        patience = patience - (1 - td["reward"][:, 0])
        torch.testing.assert_close(env.latent_state()["patience"], patience)
        assert torch.equal(td["terminated"][:, 0], patience <= 0)
        assert not td["truncated"].any()
    assert td["done"].all() and steps == 2  # rewards near 0: 1.5 patience lasts two steps
    capped = make_env("UserSession", num_envs=B, seed=3, patience=math.inf, max_length=3)
    rollout = capped.rollout(10, break_when_any_done=False)
    done = rollout["next", "done"][..., 0]
    assert done[:, 2].all() and done[:, 5].all() and not done[:, [0, 1, 3, 4]].any()


def test_observation_layout_history_and_step():
    env = make_env("UserSession", num_envs=2, seed=0, history_length=3, max_length=8)
    d = 16
    td = env.reset()
    assert td["observation"].shape == (2, d + 3 * d + 3 + 1)
    shown = [torch.tensor([4, 9]), torch.tensor([1, 2])]
    rewards = []
    for items in shown:
        td["action"] = items
        td = env.step(td)["next"]
        rewards.append(td["reward"][:, 0])
    obs = td["observation"]
    emb = env.catalogue.embeddings
    state = env.latent_state()
    torch.testing.assert_close(obs[:, :d], state["preference"] + state["view_offset"])
    torch.testing.assert_close(obs[:, d : 2 * d], emb[shown[1]])  # most recent first
    torch.testing.assert_close(obs[:, 2 * d : 3 * d], emb[shown[0]])
    assert not obs[:, 3 * d : 4 * d].any()  # third slot still empty
    torch.testing.assert_close(
        obs[:, 4 * d : 4 * d + 3], torch.stack([rewards[1], rewards[0], torch.zeros(2)], -1)
    )
    torch.testing.assert_close(obs[:, -1], torch.full((2,), 2 / 8))
    layout = env.observation_layout
    assert layout["preference"] == slice(0, d) and layout["step"] == slice(4 * d + 3, 4 * d + 4)
    assert layout["history_items"] == slice(d, 4 * d)


@pytest.mark.parametrize("name", ["RecSimBandit", "UserSession"])
def test_partial_reset_keeps_other_users(name):
    env = make_env(name, num_envs=4, seed=9)
    td = env.reset()
    td = env.rand_step(td)
    nxt = td["next"].exclude("reward")
    # TorchRL's partial reset writes the new rows into its input in place: keep a copy.
    nxt_before = nxt.clone()
    before = env.latent_state()
    mask = torch.tensor([[True], [False], [True], [False]])
    out = env.reset(nxt.set("_reset", mask))
    after = env.latent_state()
    keep = ~mask[:, 0]
    for key in before.keys():
        assert torch.equal(after[key][keep], before[key][keep]), key
    assert not torch.equal(after["preference"][~keep], before["preference"][~keep])
    assert torch.equal(out["observation"][keep], nxt_before["observation"][keep])
    assert not torch.equal(out["observation"][~keep], nxt_before["observation"][~keep])
    assert (out["item"][~keep] == -1).all()
    if name == "UserSession":
        assert (after["step"][~keep] == 0).all() and (after["step"][keep] == 1).all()


def test_rollout_with_torchrl_autoreset_runs_many_episodes():
    env = make_env("UserSession", num_envs=8, seed=0, max_length=3)
    rollout = env.rollout(12, break_when_any_done=False)
    steps = (rollout["next", "observation"][..., -1] * 3).round()
    # Observed step counter runs 1, 2, 3, then a new session starts at 1 again.
    assert set(steps.unique().tolist()) <= {1.0, 2.0, 3.0}
    assert rollout["next", "done"].sum() >= 8 * 4


def test_reset_state_is_not_a_function_of_batch_history():
    # Unmasked users do not change their state across a no-op partial reset.
    env = make_env("UserSession", num_envs=3, seed=0)
    td = env.reset()
    state = env.latent_state()
    env.reset(td.set("_reset", torch.zeros(3, 1, dtype=torch.bool)))
    assert (env.latent_state() == state).all()
    assert isinstance(state, TensorDict)

"""Sessions: the length cap truncates, leaving terminates, and the myopia world where the
greedy one-step oracle loses the session to a planner."""

import math

import numpy as np
import pytest
import torch

from drpo_rl.benchmark.presets import MYOPIA_WORLD
from drpo_rl.evaluation import PatiencePlanner, evaluate, oracle_policy
from envs import make_env


def test_cap_truncates_and_leaving_terminates():
    env = make_env("UserSession", num_envs=64, seed=0, max_length=3, patience=2.0)
    rollout = env.rollout(10, break_when_any_done=False)
    nxt = rollout["next"]
    assert torch.equal(nxt["done"], nxt["terminated"] | nxt["truncated"])
    assert not (nxt["terminated"] & nxt["truncated"]).any()
    step = nxt["observation"][..., -1]  # step / max_length
    # Truncated exactly at the cap, and only there; leaving happens before it.
    assert torch.equal(nxt["truncated"][..., 0], (step == 1.0) & ~nxt["terminated"][..., 0])
    assert nxt["terminated"].any() and nxt["truncated"].any()


def test_bandit_still_terminates_after_its_one_step():
    out = make_env("RecSimBanditDiscrete", num_envs=4, seed=0).rollout(1)["next"]
    assert out["terminated"].all() and not out["truncated"].any()


def test_gymnasium_faces_report_the_cap_as_truncation():
    import gymnasium as gym

    env = gym.make("drpo_rl/UserSession-v0", max_length=2, patience=math.inf)
    env.reset(seed=0)
    assert env.step(0)[2:4] == (False, False)
    assert env.step(0)[2:4] == (False, True)
    vec = gym.make_vec(
        "drpo_rl/UserSession-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        max_length=2,
        patience=math.inf,
    )
    vec.reset(seed=0)
    vec.step(np.zeros(3, dtype=np.int64))
    _, _, terminated, truncated, _ = vec.step(np.zeros(3, dtype=np.int64))
    assert terminated.tolist() == [False] * 3 and truncated.tolist() == [True] * 3


def test_boredom_costs_patience_on_a_repeated_cluster():
    env = make_env("UserSession", num_envs=8, seed=0, boredom=0.5, patience=10.0)
    env.reset()
    item = env.oracle()["item"]
    env._show(item)
    before = env.latent_state()
    level = before["fatigue"].gather(1, env.catalogue.cluster[item].unsqueeze(1))[:, 0]
    reward, _, _, _ = env._show(item)
    after = env.latent_state()["patience"]
    expected = before["patience"] - (1 - reward) - 0.5 * level
    assert torch.allclose(after, expected)
    assert bool((level == 1.0).all())


def _session_metrics(policy_of, overrides, users=2000):
    env = make_env(
        "UserSession",
        num_envs=users,
        seed=5,
        privileged=("latent_reward", "oracle"),
        **overrides,
    )
    return evaluate(policy_of(env), env, num_users=users, seed=11)


def test_myopia_world_the_planner_beats_the_greedy_oracle_in_session_return():
    greedy = _session_metrics(oracle_policy, MYOPIA_WORLD)
    planner = _session_metrics(PatiencePlanner, MYOPIA_WORLD)
    # Disjoint 95% intervals, a gap of well over a third of the greedy return.
    assert planner["return"] - planner["return_ci95"] > greedy["return"] + greedy["return_ci95"]
    assert planner["return"] > 1.3 * greedy["return"]
    # ... while the greedy oracle wins every step it plays: myopia.
    assert greedy["reward"] > planner["reward"]
    assert planner["length"] > 1.5 * greedy["length"]  # its users stay longer
    assert planner["session_diversity"] > greedy["session_diversity"]


def test_planner_without_penalty_is_the_greedy_oracle():
    greedy = _session_metrics(oracle_policy, MYOPIA_WORLD, users=300)
    zero = _session_metrics(lambda env: PatiencePlanner(env, penalty=0.0), MYOPIA_WORLD, 300)
    assert zero["return"] == pytest.approx(greedy["return"])


def test_making_users_leave_wins_the_step_and_loses_the_session():
    # A world built for the test: no reward damping, and a repeated cluster bores the user
    # out at once (boredom 2 against patience 1). The greedy oracle repeats the favourite
    # cluster: best immediate reward, and every user leaves after two items.
    world = {
        "fatigue_strength": 0.0,
        "boredom": 2.0,
        "patience": 1.0,
        "delta": 1.0,
        "max_length": 10,
        "reward_noise": 0.0,
    }
    leaver = _session_metrics(oracle_policy, world, users=500)
    planner = _session_metrics(PatiencePlanner, world, users=500)
    assert leaver["leave_rate"] == 1.0 and leaver["length"] <= 2.0
    assert leaver["reward"] > planner["reward"]
    assert leaver["return"] < planner["return"]


def test_planner_refuses_embedding_actions():
    env = make_env("UserSession", action_type="embedding")
    with pytest.raises(ValueError, match="item-id action"):
        PatiencePlanner(env)

"""A new action kind is one class and one registration: the env, its Gymnasium faces and the
behaviour policies all take it from there (here a toy kind that counts items backwards)."""

import gymnasium as gym
import pytest
import torch
from torchrl.envs.utils import check_env_specs

import envs
from drpo_rl.data import ExpertPolicy
from envs import actions, make_env
from envs.actions import ItemAction


class ReversedItemAction(ItemAction):
    """Action a shows item N - 1 - a (a stand-in for a new kind, such as a slate)."""

    name = "reversed"

    def decode(self, action, env):
        return env.config.num_items - 1 - super().decode(action, env)

    def decode_numpy(self, array, shape, env):
        return env.config.num_items - 1 - super().decode_numpy(array, shape, env)

    def encode(self, items, env):
        return env.config.num_items - 1 - items


@pytest.fixture
def reversed_kind(monkeypatch):
    monkeypatch.setitem(actions._KINDS, "reversed", ReversedItemAction())


def test_the_env_decodes_the_new_kind(reversed_kind):
    env = make_env("RecSimBandit", num_envs=3, num_items=10, action_type="reversed", seed=0)
    check_env_specs(env)
    td = env.reset()
    td["action"] = torch.tensor([0, 4, 9])
    assert env.step(td)["next", "item"].tolist() == [9, 5, 0]
    with pytest.raises(ValueError, match=r"item ids in \[0, 9\]"):
        env.step(td.set("action", torch.tensor([0, 4, 10])))


def test_gymnasium_faces_use_the_new_kind(reversed_kind):
    single = gym.make("drpo_rl/RecSimBandit-v0", num_items=10, action_type="reversed")
    single.reset(seed=0)
    assert isinstance(single.action_space, gym.spaces.Discrete)
    assert single.step(2)[-1]["item"] == 7
    vec = envs.SimulatedUsersVectorEnv(num_envs=2, num_items=10, action_type="reversed")
    vec.reset(seed=0)
    assert vec.step([1, 8])[-1]["item"].tolist() == [8, 1]


def test_behaviour_logs_actions_of_the_new_kind(reversed_kind):
    env = make_env("RecSimBandit", num_envs=5, num_items=10, action_type="reversed", seed=0)
    td = ExpertPolicy.from_env(env, temperature=0.0)(env.reset())
    best = env.oracle()["item"]
    assert torch.equal(td["action"], 9 - best)
    assert torch.equal(env.step(td)["next", "item"], best)


def test_unknown_kinds_are_named():
    with pytest.raises(ValueError, match=r"'action_type': expected one of \['item', 'embedding'\]"):
        make_env("RecSimBandit", action_type="slate")

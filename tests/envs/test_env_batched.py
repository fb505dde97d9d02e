"""The batched TorchRL environments: specs, keys, reward values, seeding, resets."""

import math

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from envs import make_env

B = 6


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("RecSimBandit", {}),
        ("RecSimBanditDiscrete", {}),
        ("UserSession", {}),
        ("UserSession", {"action_type": "embedding"}),
    ],
)
def test_check_env_specs(name, overrides):
    env = make_env(name, num_envs=B, seed=0, **overrides)
    check_env_specs(env)


@pytest.mark.parametrize("name", ["RecSimBandit", "RecSimBanditDiscrete", "UserSession"])
def test_contract_keys_shapes_dtypes(name):
    # By default no privileged truth rides in the outputs (nor in the observation spec).
    assert set(make_env(name, num_envs=B).observation_spec.keys()) == {"observation", "item"}
    privileged = ("latent_reward", "oracle", "item_rewards")
    env = make_env(name, num_envs=B, seed=1, privileged=privileged)
    n, d = env.config.num_items, env.config.embedding_dim
    td = env.reset()
    assert td["observation"].dtype == torch.float32
    assert td["observation"].shape[0] == B
    assert td["item_rewards"].shape == (B, n) and td["item_rewards"].dtype == torch.float32
    assert td["oracle_item"].shape == (B,) and td["oracle_reward"].shape == (B, 1)
    td = env.rand_step(td)
    nxt = td["next"]
    if env.config.action_type == "embedding":
        assert td["action"].shape == (B, d) and td["action"].dtype == torch.float32
    else:
        assert td["action"].shape == (B,) and td["action"].dtype == torch.int64
    for key in ("reward", "latent_reward"):
        assert nxt[key].shape == (B, 1) and nxt[key].dtype == torch.float32
    assert nxt["item"].shape == (B,) and nxt["item"].dtype == torch.int64
    for key in ("done", "terminated", "truncated"):
        assert nxt[key].shape == (B, 1) and nxt[key].dtype == torch.bool
    assert nxt["item_rewards"].shape == (B, n)
    cat = env.catalogue
    assert cat.embeddings.shape == (n, d) and cat.embeddings.dtype == torch.float32
    assert cat.popularity.shape == (n,) and cat.cluster.dtype == torch.int64
    assert math.isclose(float(cat.popularity.sum()), 1.0, rel_tol=1e-5)


def _reference_item_rewards(env, preference):
    """The paper's formula, written independently of envs.dynamics."""
    e = env.catalogue.embeddings.double()
    u = preference.double()
    cos = (u @ e.T) / (u.norm(dim=-1, keepdim=True) * e.norm(dim=-1)[None, :])
    delta = env.config.delta
    return torch.exp(-(1 - cos) / (2 * delta**2))


def test_bandit_rewards_follow_the_formula():
    env = make_env(
        "RecSimBanditDiscrete", num_envs=B, seed=3, reward_noise=0.0, privileged=("latent_reward",)
    )
    td = env.reset()
    pref = env.latent_state()["preference"]
    expected = _reference_item_rewards(env, pref)
    torch.testing.assert_close(env.reward_table().double(), expected, rtol=1e-5, atol=1e-6)
    action = torch.tensor([0, 5, 17, 42, 99, 3])
    td["action"] = action
    nxt = env.step(td)["next"]
    want = expected[torch.arange(B), action].float()
    torch.testing.assert_close(nxt["latent_reward"][:, 0], want, rtol=1e-5, atol=1e-6)
    # Without noise the observed reward is the latent one.
    torch.testing.assert_close(nxt["reward"][:, 0], want, rtol=1e-5, atol=1e-6)
    assert nxt["done"].all() and nxt["terminated"].all() and not nxt["truncated"].any()


def test_same_seed_same_rollout_different_seed_differs():
    def rollout(seed):
        env = make_env("UserSession", num_envs=B, seed=seed)
        torch.manual_seed(0)  # the random actions of rollout come from torch's global RNG
        return env.rollout(8, break_when_any_done=False)

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert (a == b).all()
    assert not torch.equal(a["observation"], c["observation"])
    assert not torch.equal(a["next", "reward"], c["next", "reward"])


def test_env_spec_pickles_for_worker_processes():
    import pickle

    from envs import EnvSpec

    spec = EnvSpec("UserSession", {"max_length": 3, "mixture_weights": [1.0] * 8})
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and hash(again) == hash(spec)
    assert again.make(num_envs=2, seed=0).config.max_length == 3

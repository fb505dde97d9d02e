"""Catalogue scale: nothing [users, items]; chunked decode, oracle and queries are exact."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from drpo_rl.data import BehaviorMixture
from envs import chunks, dynamics, make_env


class LargestOutput(TorchDispatchMode):
    """Records the largest tensor any torch operation produces while active."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.numel = max(self.numel, tensor.numel())
        return out


def full_table(env):
    """The [users, items] reward table in float64, from the rule written out here."""
    state = env.latent_state()
    e = env.catalogue.unit_embeddings.double()
    u = state["preference"].double()
    table = torch.exp(((u @ e.T) - 1) / (2 * env.config.delta**2))
    if "fatigue" in state.keys():
        fatigue = state["fatigue"].double()[:, env.catalogue.cluster]
        table = table * torch.exp(-env.config.fatigue_strength * fatigue)
    return table


SESSION = {"fatigue_strength": 0.6, "drift_rate": 0.3, "max_length": 6, "patience": math.inf}


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 13, 14, 100])
def test_chunked_decode_equals_brute_force_argmax(chunk_size):
    env = make_env("RecSimBandit", num_envs=64, num_items=13, seed=0, chunk_size=chunk_size)
    td = env.reset()
    action = torch.randn(64, 16, generator=torch.Generator().manual_seed(chunk_size))
    td["action"] = action
    item = env.step(td)["next", "item"]
    brute = (action @ env.catalogue.unit_embeddings.T).argmax(-1)
    assert torch.equal(item, brute)


def test_chunked_argmax_breaks_ties_like_argmax_for_every_chunk_size():
    table = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    for size in range(1, 7):
        value, index = chunks.argmax(lambda items: table[:, items], 5, size)
        assert index.tolist() == table.argmax(-1).tolist() == [1, 0]
        assert value.tolist() == [3.0, 2.0]


@pytest.mark.parametrize(
    ("name", "overrides"), [("RecSimBanditDiscrete", {}), ("UserSession", SESSION)]
)
@pytest.mark.parametrize("chunk_size", [1, 7, 50, 1000])
def test_oracle_is_the_maximum_of_the_full_table(name, overrides, chunk_size):
    env = make_env(name, num_envs=32, num_items=50, seed=1, chunk_size=chunk_size, **overrides)
    td = env.reset()
    for _ in range(3):  # sessions: the oracle follows fatigue and drift
        table = full_table(env)
        best = env.oracle()
        torch.testing.assert_close(best["reward"].double(), table.max(-1).values)
        at_best = table.gather(-1, best["item"][:, None])[:, 0]
        torch.testing.assert_close(at_best, table.max(-1).values)
        td["action"] = torch.randint(50, (32,), generator=torch.Generator().manual_seed(0))
        td = env.step(td)["next"]


def test_item_step_reward_and_queries_equal_the_full_table():
    env = make_env(
        "UserSession",
        num_envs=16,
        num_items=40,
        seed=2,
        reward_noise=0.0,
        privileged=("latent_reward",),
        **SESSION,
    )
    td = env.reset()
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        table = full_table(env)
        items = torch.randint(40, (16, 3), generator=gen)
        torch.testing.assert_close(env.rewards(items).double(), table.gather(-1, items))
        torch.testing.assert_close(env.reward_table(slice(5, 17)).double(), table[:, 5:17])
        td["action"] = items[:, 0]
        td = env.step(td)["next"]
        want = table.gather(-1, items[:, :1])
        torch.testing.assert_close(td["latent_reward"].double(), want)
        torch.testing.assert_close(td["reward"].double(), want)  # no reward noise


def test_a_million_items_step_oracle_and_behaviour_stay_within_one_chunk():
    # Built in O(items x d); a [users, items] float table would take 400 GB.
    env = make_env("RecSimBanditDiscrete", num_envs=100_000, num_items=1_000_000, seed=0)
    cat = env.catalogue
    assert cat.embeddings.shape == (1_000_000, 16)
    td = env.reset()
    td["action"] = torch.randint(1_000_000, (100_000,))
    with LargestOutput() as watch:
        out = env.step(td)
    # An item-id step produces O(users x d): the observation is the largest output.
    assert watch.numel == 100_000 * 16
    assert out["next", "reward"].shape == (100_000, 1)

    small = make_env("RecSimBandit", num_envs=64, num_items=1_000_000, seed=0, chunk_size=8192)
    mix = BehaviorMixture.from_weights(
        small, {"expert": 0.4, "suboptimal": 0.3, "epsilon_oracle": 0.1, "random": 0.2}
    )
    td = small.step_and_maybe_reset(mix(small.reset()))[1]  # first step: O(items) caches
    with LargestOutput() as watch:
        best = small.oracle()
        td = small.step(mix(td))
    # The chunked scans produce [users, chunk] blocks, and the catalogue is never copied.
    assert watch.numel <= 64 * (8192 + 64)
    assert best["item"].shape == (64,) and td["next", "item"].shape == (64,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: make_env("RecSimBandit", chunk_size=0),
            "chunk_size: expected an integer >= 1, got 0",
        ),
        (
            lambda: make_env(
                "RecSimBandit", num_envs=1000, num_items=10**6, privileged=("item_rewards",)
            ),
            r"privileged='item_rewards': a reward table of 1000 users x 1000000 items .* 3\.7 GiB, "
            r"above the limit of 1\.0 GiB",
        ),
        (
            lambda: make_env("RecSimBandit", privileged=("reward_table",)),
            r"privileged: expected keys among",
        ),
    ],
)
def test_bad_scale_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_queries_are_named():
    env = make_env("RecSimBanditDiscrete", num_envs=4, num_items=10, seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.oracle()
    env.reset()
    with pytest.raises(ValueError, match=r"items: expected item ids in \[0, 9\], got .* 0 to 10"):
        env.rewards(torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"items: expected int64 item ids of shape \(4,\) or"):
        env.rewards(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1, got -2"):
        env.oracle(chunk_size=-2)
    big = make_env("RecSimBanditDiscrete", num_envs=300_000, num_items=1000, seed=0)
    big.reset()
    with pytest.raises(ValueError, match=r"items: a reward table of 300000 users x 1000 items"):
        big.reward_table()
    assert big.reward_table(slice(0, 10)).shape == (300_000, 10)


def test_pair_and_table_rules_agree():
    items = torch.nn.functional.normalize(torch.randn(30, 8), dim=-1)
    users = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    table = dynamics.affinity(items, users, 0.4)
    pairs = dynamics.pair_affinity(items[None].expand(5, -1, -1), users[:, None], 0.4)
    torch.testing.assert_close(pairs, table)


@pytest.mark.parametrize("chunk_size", [3, 7, 50])
def test_expert_softmax_sampling_is_the_full_inverse_cdf_for_every_chunk_size(chunk_size):
    from drpo_rl.data import ExpertPolicy

    env = make_env(
        "RecSimBanditDiscrete", num_envs=2000, num_items=50, seed=0, chunk_size=chunk_size
    )
    env.reset()
    dist = ExpertPolicy.from_env(env, temperature=0.05).distribution()
    uniform = torch.rand(2000, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(full_table(env) / 0.05, dim=-1)
    brute = torch.searchsorted(probs.cumsum(-1), uniform.double()[:, None], right=True)[:, 0]
    # The same draws pick the same items (a draw within rounding of a boundary may not).
    assert (dist.sample(uniform) != brute).sum() <= 2

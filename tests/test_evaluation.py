"""Online evaluation: metric values against known answers, sessions, chunks, seeds, errors."""

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torchrl.envs import ExcludeTransform, TransformedEnv

from drpo_rl.evaluation import OnlineMetrics, evaluate, evaluation_env, oracle_policy
from drpo_rl.evaluation.metrics import Z_95, first_session_mask
from drpo_rl.evaluation.online import PRIVILEGED
from drpo_rl.models import make_gaussian_actor
from envs import EnvSpec
from envs import make_env as _make_env


def make_env(*args, **kwargs):
    """An env with the privileged outputs evaluate() asks of the envs it builds."""
    return _make_env(*args, privileged=PRIVILEGED, **kwargs)


class UniformRandomItems(TensorDictModuleBase):
    """Recommends a uniformly random item id from its own generator."""

    def __init__(self, num_items: int, seed: int) -> None:
        super().__init__()
        self.in_keys, self.out_keys = ["observation"], ["action"]
        self.num_items = num_items
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, td):
        shape = td.get("observation").shape[:-1]
        td.set("action", torch.randint(self.num_items, shape, generator=self.generator))
        return td


def constant_item_policy(item: int) -> TensorDictModule:
    return TensorDictModule(
        lambda obs: torch.full(obs.shape[:-1], item, dtype=torch.int64),
        in_keys=["observation"],
        out_keys=["action"],
    )


@pytest.mark.parametrize("name", ["RecSimBandit", "RecSimBanditDiscrete"])
def test_oracle_has_zero_regret_and_full_hit_rate(name):
    env = make_env(name, num_envs=500, seed=0)
    m = evaluate(oracle_policy(env), env, num_users=1000, seed=1)
    assert m["num_users"] == m["num_steps"] == 1000
    assert m["hit_rate"] == 1.0
    assert abs(m["regret"]) < 1e-6
    assert m["ecpm"] == pytest.approx(5.0 * m["reward"])
    assert m["ecpm_ci95"] == pytest.approx(5.0 * m["reward_ci95"])
    assert m["reward_ci_low"] < m["reward"] < m["reward_ci_high"]
    # Users' best items are mostly good: the oracle's noiseless reward is high, and the
    # observed reward (noise then clipping) stays close to it.
    assert m["latent_reward"] > 0.6
    assert abs(m["reward"] - m["latent_reward"]) < 3 * m["reward_ci95"] + 0.02
    assert 0 < m["coverage"] <= 1 and 0 < m["diversity"] <= 2
    assert "return" not in m and "length" not in m


def test_oracle_latent_reward_is_mean_of_best_item_reward():
    env = make_env("RecSimBanditDiscrete", num_envs=2000, seed=3)
    m = evaluate(oracle_policy(env), env, num_users=2000, seed=3)
    # The same seed draws the same users again: their best-item reward, averaged.
    env.set_seed(3)
    env.reset()
    best = env.oracle()["reward"].double().mean().item()
    assert m["latent_reward"] == pytest.approx(best, abs=0.03)


def test_uniform_random_policy_matches_catalogue_mean_latent_reward():
    env = make_env("RecSimBanditDiscrete", num_envs=4000, seed=0)
    n = env.config.num_items
    m = evaluate(UniformRandomItems(n, seed=0), env, num_users=8000, seed=5)
    reference = make_env("RecSimBanditDiscrete", num_envs=20000, seed=11)
    reference.reset()
    item_rewards = reference.reward_table().double()
    catalogue_mean = item_rewards.mean().item()
    best = item_rewards.max(-1).values.mean().item()
    assert m["latent_reward"] == pytest.approx(catalogue_mean, abs=0.02)
    assert m["regret"] == pytest.approx(best - catalogue_mean, abs=0.02)
    assert m["hit_rate"] < 5.0 / n
    assert m["coverage"] == 1.0
    # Observed rewards are clipped noisy latents: the interval must cover a value near them.
    assert abs(m["reward"] - catalogue_mean) < 0.05


def test_constant_policy_has_no_diversity_and_one_item_coverage():
    env = make_env("RecSimBanditDiscrete", num_envs=256, seed=0)
    m = evaluate(constant_item_policy(7), env, num_users=256)
    assert m["coverage"] == pytest.approx(1 / env.config.num_items)
    assert m["diversity"] == pytest.approx(0.0, abs=1e-9)
    assert m["hit_rate"] < 1.0 and m["regret"] > 0


def test_same_seed_same_numbers_and_deterministic_gaussian_actor():
    torch.manual_seed(0)
    actor = make_gaussian_actor(make_env("RecSimBandit", seed=0))
    first = evaluate(actor, "RecSimBandit", num_users=600, seed=4, batch_size=256)
    torch.manual_seed(123)  # a sampling policy would now draw different actions
    second = evaluate(actor, "RecSimBandit", num_users=600, seed=4, batch_size=256)
    other = evaluate(actor, "RecSimBandit", num_users=600, seed=5, batch_size=256)
    assert first == second
    assert other["reward"] != first["reward"]


def test_users_are_counted_exactly_across_uneven_chunks():
    m = evaluate(constant_item_policy(0), "RecSimBanditDiscrete", num_users=300, batch_size=128)
    assert m["num_users"] == m["num_steps"] == 300


def test_sessions_report_return_length_and_truncation():
    env = make_env("UserSession", num_envs=300, seed=0, max_length=6)
    m = evaluate(oracle_policy(env), env, num_users=300, seed=2)
    assert 1 <= m["length"] <= 6
    assert m["num_steps"] == pytest.approx(m["length"] * 300)
    assert m["return"] == pytest.approx(m["reward"] * m["length"])
    assert m["truncated_sessions"] == 0
    assert m["regret"] == pytest.approx(0.0, abs=1e-6) and m["hit_rate"] == 1.0
    assert 0 <= m["session_diversity"] <= 2
    short = evaluate(oracle_policy(env), env, num_users=300, seed=2, max_steps=2)
    assert short["length"] <= 2
    assert short["truncated_sessions"] > 0


def test_constant_item_within_session_has_zero_session_diversity():
    env = make_env("UserSession", num_envs=200, seed=0, max_length=5)
    m = evaluate(constant_item_policy(3), env, num_users=200)
    assert m["session_diversity"] == pytest.approx(0.0, abs=1e-9)


def test_env_without_privileged_keys_omits_those_metrics():
    env = _make_env("RecSimBanditDiscrete", num_envs=64, seed=0)
    m = evaluate(constant_item_policy(1), env, num_users=64, max_steps=1)
    assert {"reward", "reward_ci95", "ecpm"} <= set(m)
    assert not {"latent_reward", "regret", "hit_rate"} & set(m)


def test_first_session_mask_stops_after_first_done():
    done = torch.tensor([[False, True, False, True], [True, False, False, False]])
    assert first_session_mask(done).tolist() == [
        [True, True, False, False],
        [True, False, False, False],
    ]


def test_online_metrics_cluster_interval_matches_hand_computation():
    # Two users: user 0 gets rewards 0.2, 0.4 then leaves (a later session is ignored);
    # user 1 gets 1.0 then leaves.
    reward = torch.tensor([[0.2, 0.4, 0.9], [1.0, 0.0, 0.0]])
    done = torch.tensor([[False, True, True], [True, False, True]])
    chunk = TensorDict(
        {"next": {"reward": reward.unsqueeze(-1), "done": done.unsqueeze(-1)}},
        batch_size=[2, 3],
    )
    acc = OnlineMetrics(num_items=None, embeddings=None, price=2.0, multi_step=True)
    acc.update(chunk, num_users=2)
    m = acc.result()
    returns, lengths = torch.tensor([0.6, 1.0]), torch.tensor([2.0, 1.0])
    mean = returns.sum() / lengths.sum()
    se = math.sqrt(((returns - mean * lengths) ** 2).sum() * 2 / 1) / lengths.sum()
    assert m["reward"] == pytest.approx(mean.item())
    assert m["reward_ci95"] == pytest.approx(Z_95 * se)
    assert m["ecpm"] == pytest.approx(2.0 * mean.item())
    assert m["return"] == pytest.approx(0.8) and m["length"] == pytest.approx(1.5)
    assert m["num_steps"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_users": 0}, "num_users: expected an integer >= 1, got 0"),
        ({"num_users": 10, "batch_size": 0}, "batch_size: expected an integer >= 1 or None"),
        ({"num_users": 10, "max_steps": -1}, "max_steps: expected an integer >= 1 or None"),
        ({"num_users": 10, "device": "tpu"}, "device 'tpu' is not a device name; valid devices"),
        ({"num_users": 10, "device": "cpu:1"}, "device 'cpu:1': there is one CPU device"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(constant_item_policy(0), "RecSimBanditDiscrete", **kwargs)


def test_env_overrides_with_an_env_instance_or_spec_are_rejected():
    env = make_env("RecSimBanditDiscrete", num_envs=4)
    for given in (env, EnvSpec("RecSimBanditDiscrete")):
        with pytest.raises(ValueError, match="env_overrides: only apply when env is a name"):
            evaluate(constant_item_policy(0), given, num_users=4, env_overrides={"num_items": 5})


def test_an_env_spec_and_its_evaluation_env_give_the_numbers_of_the_name():
    spec = EnvSpec("RecSimBanditDiscrete", {"num_items": 30})
    by_name = evaluate(
        constant_item_policy(3),
        "RecSimBanditDiscrete",
        num_users=300,
        seed=2,
        env_overrides={"num_items": 30},
    )
    assert evaluate(constant_item_policy(3), spec, num_users=300, seed=2) == by_name
    env = evaluation_env(spec, 300)
    for _ in range(2):  # built once, re-seeded by each evaluation
        assert evaluate(constant_item_policy(3), env, num_users=300, seed=2) == by_name


def test_oracle_needs_the_privileged_oracle_item():
    env = TransformedEnv(
        make_env("RecSimBanditDiscrete", num_envs=8), ExcludeTransform("oracle_item")
    )
    with pytest.raises(ValueError, match=r"privileged 'oracle_item'.*privileged=\(.oracle.,\)"):
        evaluate(oracle_policy(env), env, num_users=8)


def test_behaviour_agents_are_bound_to_the_evaluation_env_and_back():
    from drpo_rl.data import BehaviorMixture

    own = _make_env("RecSimBanditDiscrete", num_envs=4, seed=0)
    expert = BehaviorMixture.from_weights(own, {"expert": 1.0})
    m = evaluate(expert, "RecSimBanditDiscrete", num_users=500, seed=1)
    assert expert.env is own and all(agent.env is own for agent in expert.agents)
    # it served the evaluation's users: nearly the oracle's reward, not some other users'
    best = evaluate(oracle_policy(own), "RecSimBanditDiscrete", num_users=500, seed=1)
    assert m["regret"] < 0.03 and m["latent_reward"] > best["latent_reward"] - 0.03

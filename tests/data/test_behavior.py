"""Behaviour agents and their mixture: distributions, propensities, agent ids, seeding."""

import math

import pytest
import torch
from tensordict import TensorDict

from drpo_rl.data.behavior import (
    AGENT_IDS,
    AGENTS,
    AntiOraclePolicy,
    BehaviorMixture,
    EpsilonOraclePolicy,
    ExpertPolicy,
    RandomPolicy,
    SuboptimalPolicy,
    make_agent,
)
from envs import make_env


@pytest.fixture(scope="module")
def env():
    return make_env("RecSimBanditDiscrete", num_envs=6, num_items=5, seed=0)


def _state(rewards):
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    return TensorDict({"item_rewards": rewards}, batch_size=rewards.shape[:1])


REWARDS = [[0.1, 0.9, 0.5, 0.3, 0.2], [0.7, 0.1, 0.2, 0.6, 0.95]]


def test_agent_distributions_match_their_definitions(env):
    td = _state(REWARDS)
    r = td["item_rewards"]
    popularity = env.catalogue.popularity
    expected = {
        ExpertPolicy.from_env(env, temperature=0.1): torch.softmax(r / 0.1, -1),
        ExpertPolicy.from_env(env, temperature=0.0): torch.eye(5)[[1, 4]],
        AntiOraclePolicy.from_env(env): torch.eye(5)[[0, 1]],
        AntiOraclePolicy.from_env(env, temperature=0.5): torch.softmax(-r / 0.5, -1),
        EpsilonOraclePolicy.from_env(env, epsilon=0.25): 0.75 * torch.eye(5)[[1, 4]] + 0.05,
        RandomPolicy.from_env(env): torch.full((2, 5), 0.2),
        SuboptimalPolicy.from_env(env): popularity.expand(2, 5),
    }
    for agent, probs in expected.items():
        got = agent.item_probs(td)
        assert got.shape == (2, 5) and got.dtype == torch.float32, agent.name
        torch.testing.assert_close(got, probs, msg=agent.name)
    # shortlist: the 2 most relevant items, in proportion to their popularity
    got = SuboptimalPolicy.from_env(env, shortlist=2).item_probs(td)
    for row, top in enumerate([[1, 2], [4, 0]]):
        want = torch.zeros(5)
        want[top] = popularity[top] / popularity[top].sum()
        torch.testing.assert_close(got[row], want)


def test_agents_write_action_log_prob_and_id_inside_the_env(env):
    for name, cls in AGENTS.items():
        agent = cls.from_env(env, generator=torch.Generator().manual_seed(0))
        td = agent(env.reset())
        probs = agent.item_probs(td)
        assert td["action"].dtype == torch.int64 and td["action"].shape == (6,)
        assert td["behavior_log_prob"].dtype == torch.float32
        torch.testing.assert_close(
            td["behavior_log_prob"], probs.gather(-1, td["action"][:, None]).squeeze(-1).log()
        )
        assert td["behavior_agent"].tolist() == [AGENT_IDS[name]] * 6
        out = env.step(td)
        assert out["next", "item"].tolist() == td["action"].tolist()


def test_agent_ids_are_distinct_and_stable():
    assert AGENT_IDS == {
        "expert": 0,
        "suboptimal": 1,
        "random": 2,
        "epsilon_oracle": 3,
        "anti_oracle": 4,
    }


def test_mixture_propensity_is_the_weighted_sum_of_component_probabilities(env):
    weights = {"expert": 0.5, "suboptimal": 0.3, "random": 0.2}
    mix = BehaviorMixture.from_weights(
        env, weights, agent_options={"expert": {"temperature": 0.2}}, generator=_gen(1)
    )
    td = mix(_state(REWARDS))
    r = torch.tensor(REWARDS)
    pop = env.catalogue.popularity
    for row in range(2):
        a = int(td["action"][row])
        by_hand = (0.5 * torch.softmax(r[row] / 0.2, -1)[a] + 0.3 * pop[a] + 0.2 * (1 / 5)).log()
        torch.testing.assert_close(td["behavior_log_prob"][row], by_hand)
    assert set(td["behavior_agent"].tolist()) <= {0, 1, 2}


def test_mixture_agent_frequencies_and_item_propensities_match_empirically(env):
    # 40k interactions of one user state: agent shares ~ weights, item shares ~ exp(log_prob).
    n = 40_000
    weights = {"expert": 0.1, "suboptimal": 0.6, "random": 0.3}
    mix = BehaviorMixture.from_weights(env, weights, generator=_gen(2))
    td = mix(_state([REWARDS[0]] * n))
    for name, w in weights.items():
        share = (td["behavior_agent"] == AGENT_IDS[name]).float().mean().item()
        assert abs(share - w) < 5 * math.sqrt(w * (1 - w) / n), name
    item_share = torch.bincount(td["action"], minlength=5).float() / n
    propensity = torch.zeros(5).scatter_(0, td["action"], td["behavior_log_prob"].exp())
    assert (item_share - propensity).abs().max() < 5 * math.sqrt(0.25 / n)
    torch.testing.assert_close(propensity, mix.item_probs(_state([REWARDS[0]]))[0])


def test_same_generator_seed_gives_identical_actions(env):
    def run(seed):
        mix = BehaviorMixture.from_weights(
            env, {"expert": 0.5, "random": 0.5}, generator=_gen(seed)
        )
        return mix(_state([REWARDS[0]] * 200))

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a["action"], b["action"])
    assert torch.equal(a["behavior_agent"], b["behavior_agent"])
    assert not torch.equal(a["action"], c["action"])


def test_embedding_actions_without_noise_are_item_embeddings_with_item_propensity():
    env = make_env("RecSimBandit", num_envs=50, num_items=8, embedding_dim=4, seed=0)
    mix = BehaviorMixture.from_weights(env, {"expert": 0.5, "random": 0.5}, generator=_gen(3))
    td = mix(env.reset())
    item = env.step(td.clone())["next", "item"]
    torch.testing.assert_close(td["action"], env.catalogue.embeddings[item])
    want = mix.item_probs(td).gather(-1, item[:, None]).squeeze(-1).log()
    torch.testing.assert_close(td["behavior_log_prob"], want)


def test_embedding_actions_with_noise_log_the_gaussian_mixture_density():
    env = make_env("RecSimBandit", num_envs=30, num_items=6, embedding_dim=3, seed=0)
    mix = BehaviorMixture.from_weights(
        env, {"expert": 0.4, "suboptimal": 0.6}, action_noise=0.3, generator=_gen(4)
    )
    td = mix(env.reset())
    probs = mix.item_probs(td)
    components = torch.distributions.Independent(
        torch.distributions.Normal(env.catalogue.embeddings, 0.3), 1
    )
    for row in range(30):
        density = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=probs[row]), components
        )
        torch.testing.assert_close(
            td["behavior_log_prob"][row], density.log_prob(td["action"][row]), rtol=1e-4, atol=1e-4
        )
    # the noise moved every action off the catalogue
    assert torch.cdist(td["action"], env.catalogue.embeddings).min() > 1e-3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda env: make_agent("oracle", env), r"unknown behaviour agent 'oracle'.*'expert'"),
        (lambda env: BehaviorMixture.from_weights(env, {"expert": 0.5}), "summing to 1"),
        (
            lambda env: BehaviorMixture.from_weights(env, {"expert": 1.5, "random": -0.5}),
            r"weights\['random'\]: expected a finite number >= 0",
        ),
        (
            lambda env: BehaviorMixture.from_weights(env, {"expert": 0.5, "best": 0.5}),
            r"unknown agents \['best'\]",
        ),
        (
            lambda env: BehaviorMixture.from_weights(
                env, {"expert": 1.0}, agent_options={"random": {}}
            ),
            r"agent_options: \['random'\]",
        ),
        (lambda env: ExpertPolicy.from_env(env, temperature=-1), "temperature"),
        (lambda env: EpsilonOraclePolicy.from_env(env, epsilon=2), "epsilon"),
        (lambda env: SuboptimalPolicy.from_env(env, shortlist=0), "shortlist"),
        (lambda env: RandomPolicy.from_env(env, action_noise=0.1), "0 for item actions"),
    ],
)
def test_bad_settings_raise_naming_the_field(env, call, match):
    with pytest.raises(ValueError, match=match):
        call(env)


def test_mixture_rejects_components_of_different_envs(env):
    other = make_env("RecSimBanditDiscrete", num_envs=2, num_items=5, seed=0)
    with pytest.raises(ValueError, match="must share the catalogue"):
        BehaviorMixture([ExpertPolicy.from_env(env), RandomPolicy.from_env(other)], [0.5, 0.5])


def _gen(seed):
    return torch.Generator().manual_seed(seed)

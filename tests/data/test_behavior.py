"""Behaviour agents and their mixture: distributions, propensities, agent ids, seeding."""

import math

import pytest
import torch

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


@pytest.fixture
def env():
    # chunk_size=2 over 5 items: every catalogue-wide computation runs in uneven chunks.
    env = make_env("RecSimBanditDiscrete", num_envs=6, num_items=5, seed=0, chunk_size=2)
    env.reset()
    return env


def _probs(agent):
    """The agent's item probabilities [B, N] for the env's current users."""
    return agent.distribution().log_probs(slice(0, agent.num_items)).exp()


def test_agent_distributions_match_their_definitions(env):
    r = env.reward_table()
    best, worst = r.argmax(-1), r.argmin(-1)
    popularity = env.catalogue.popularity
    eye = torch.eye(5)
    expected = {
        ExpertPolicy.from_env(env, temperature=0.1): torch.softmax(r / 0.1, -1),
        ExpertPolicy.from_env(env, temperature=0.0): eye[best],
        AntiOraclePolicy.from_env(env): eye[worst],
        AntiOraclePolicy.from_env(env, temperature=0.5): torch.softmax(-r / 0.5, -1),
        EpsilonOraclePolicy.from_env(env, epsilon=0.25): 0.75 * eye[best] + 0.05,
        RandomPolicy.from_env(env): torch.full((6, 5), 0.2),
        SuboptimalPolicy.from_env(env): popularity.expand(6, 5),
    }
    items = torch.arange(6) % 5
    for agent, probs in expected.items():
        got = _probs(agent)
        assert got.shape == (6, 5) and got.dtype == torch.float32, agent.name
        torch.testing.assert_close(got, probs, msg=agent.name)
        # log_prob of one item per user agrees with the chunked table
        torch.testing.assert_close(
            agent.distribution().log_prob(items).exp(), probs[torch.arange(6), items]
        )
    # shortlist: the 2 most relevant items, in proportion to their popularity
    got = _probs(SuboptimalPolicy.from_env(env, shortlist=2))
    for row, top in enumerate(r.topk(2, dim=-1).indices):
        want = torch.zeros(5)
        want[top] = popularity[top] / popularity[top].sum()
        torch.testing.assert_close(got[row], want)


def test_agents_write_action_log_prob_and_id_inside_the_env(env):
    for name, cls in AGENTS.items():
        agent = cls.from_env(env, generator=torch.Generator().manual_seed(0))
        td = agent(env.reset())
        probs = _probs(agent)
        assert td["action"].dtype == torch.int64 and td["action"].shape == (6,)
        assert td["behavior_log_prob"].dtype == torch.float32
        chosen = probs.gather(-1, td["action"][:, None]).squeeze(-1)
        torch.testing.assert_close(td["behavior_log_prob"], chosen.log())
        assert (chosen > 0).all(), name
        assert td["behavior_agent"].tolist() == [AGENT_IDS[name]] * 6
        out = env.step(td)
        assert out["next", "item"].tolist() == td["action"].tolist()


def test_agents_score_the_catalogue_in_chunks():
    # 200,000 items for 100 users, in chunks of 4,096: no [users, items] table is built.
    env = make_env("RecSimBanditDiscrete", num_envs=100, num_items=200_000, seed=0, chunk_size=4096)
    sizes = []
    table = env.reward_table
    env.reward_table = lambda items, users=None: (
        sizes.append(items.stop - items.start) or table(items, users)
    )
    mix = BehaviorMixture.from_weights(
        env, {"expert": 0.5, "suboptimal": 0.3, "random": 0.2}, generator=_gen(0)
    )
    td = mix(env.reset())
    assert sizes and set(sizes) == {4096, 200_000 % 4096}
    gap = env.oracle()["reward"] - env.rewards(td["action"])
    assert (gap >= -1e-6).all()  # nothing beats the oracle
    # at temperature 0.02 the expert's items are close to the best, random ones are not
    expert = td["behavior_agent"] == AGENT_IDS["expert"]
    random = td["behavior_agent"] == AGENT_IDS["random"]
    assert gap[expert].mean() < 0.1 < 0.3 < gap[random].mean()


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
    td = mix(env.reset())
    r = env.reward_table()
    pop = env.catalogue.popularity
    for row in range(6):
        a = int(td["action"][row])
        by_hand = (0.5 * torch.softmax(r[row] / 0.2, -1)[a] + 0.3 * pop[a] + 0.2 * (1 / 5)).log()
        torch.testing.assert_close(td["behavior_log_prob"][row], by_hand)
    assert set(td["behavior_agent"].tolist()) <= {0, 1, 2}


def test_mixture_agent_frequencies_and_item_propensities_match_empirically(env):
    # 40k interactions of one user state (one cluster, no spread: every user is the same):
    # agent shares ~ weights, item shares ~ exp(log_prob).
    n = 40_000
    same = make_env(
        "RecSimBanditDiscrete", num_envs=n, num_items=5, num_clusters=1, user_spread=0.0, seed=0
    )
    weights = {"expert": 0.1, "suboptimal": 0.6, "random": 0.3}
    mix = BehaviorMixture.from_weights(same, weights, generator=_gen(2))
    td = mix(same.reset())
    for name, w in weights.items():
        share = (td["behavior_agent"] == AGENT_IDS[name]).float().mean().item()
        assert abs(share - w) < 5 * math.sqrt(w * (1 - w) / n), name
    item_share = torch.bincount(td["action"], minlength=5).float() / n
    propensity = torch.zeros(5).scatter_(0, td["action"], td["behavior_log_prob"].exp())
    assert (item_share - propensity).abs().max() < 5 * math.sqrt(0.25 / n)
    torch.testing.assert_close(propensity, _probs(mix)[0])


def test_same_generator_seed_gives_identical_actions(env):
    def run(seed):
        mix = BehaviorMixture.from_weights(
            env, {"expert": 0.5, "random": 0.5}, generator=_gen(seed)
        )
        env.set_seed(0)  # the same users each time
        return mix(env.reset())

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
    want = _probs(mix).gather(-1, item[:, None]).squeeze(-1).log()
    torch.testing.assert_close(td["behavior_log_prob"], want)


def test_embedding_actions_with_noise_log_the_gaussian_mixture_density():
    env = make_env("RecSimBandit", num_envs=30, num_items=6, embedding_dim=3, seed=0, chunk_size=4)
    mix = BehaviorMixture.from_weights(
        env, {"expert": 0.4, "suboptimal": 0.6}, action_noise=0.3, generator=_gen(4)
    )
    td = mix(env.reset())
    probs = _probs(mix)
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
    with pytest.raises(ValueError, match="must share the env"):
        BehaviorMixture([ExpertPolicy.from_env(env), RandomPolicy.from_env(other)], [0.5, 0.5])


def _gen(seed):
    return torch.Generator().manual_seed(seed)

"""The user population and the core's hooks for its own items and users."""

import pytest
import torch

from envs import RecSimConfig, SimulatedUsersEnv, UserPopulation, dynamics, make_env
from envs.catalogue import Catalogue


def test_default_population_is_the_catalogue_mixture():
    env = make_env("UserSession", num_envs=3, seed=0)
    assert env.population.preferences is env.catalogue.centres
    assert env.population.weights is env.catalogue.mixture_weights


def test_sampler_picks_rows_by_weight_and_adds_the_spread():
    table = torch.nn.functional.normalize(torch.randn(4, 5, generator=torch.manual_seed(0)), dim=-1)
    pop = UserPopulation.from_table(table, torch.tensor([0.1, 0.0, 0.6, 0.3]))
    gen = torch.Generator().manual_seed(1)
    drawn = dynamics.sample_preferences(pop, 20_000, 0.0, gen)
    # No spread: every user is exactly one row (up to the normalisation's rounding).
    best = (drawn @ table.T).max(dim=-1)
    torch.testing.assert_close(drawn, table[best.indices], rtol=0, atol=1e-6)
    share = torch.bincount(best.indices, minlength=4) / 20_000
    torch.testing.assert_close(share, torch.tensor([0.1, 0.0, 0.6, 0.3]), rtol=0, atol=0.015)
    spread = dynamics.sample_preferences(pop, 2_000, 0.2, gen)
    cos = (spread @ table.T).max(dim=-1).values
    assert torch.allclose(spread.norm(dim=-1), torch.ones(2_000))
    assert 0.8 < float(cos.mean()) < 0.99  # near a row, but not on it


def test_from_table_normalises_and_checks():
    pop = UserPopulation.from_table(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    torch.testing.assert_close(pop.preferences, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    torch.testing.assert_close(pop.weights, torch.tensor([0.5, 0.5]))
    assert pop.size == 2 and pop.device == torch.device("cpu")
    with pytest.raises(ValueError, match=r"preferences: expected a floating-point tensor \[M, d\]"):
        UserPopulation.from_table(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"positive length, got row 1 = \[0.0, 0.0\]"):
        UserPopulation.from_table(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"weights: expected 2 finite .*, got shape \(3,\)"):
        UserPopulation.from_table(torch.eye(2), torch.ones(3))
    with pytest.raises(ValueError, match=r"got weight 0 = nan"):
        UserPopulation.from_table(torch.eye(2), torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match=r"got weights that sum to 0"):
        UserPopulation.from_table(torch.eye(2), torch.zeros(2))


class TwoUsers(SimulatedUsersEnv):
    """The core with its own users: two fixed preference vectors, the second 3x as likely."""

    def _make_population(self, config, catalogue):
        table = torch.eye(2, config.embedding_dim)
        return UserPopulation.from_table(table, torch.tensor([1.0, 3.0]), device=self.device)


def test_population_hook_decides_the_users():
    env = TwoUsers(RecSimConfig(action_type="item", user_spread=0.0), num_envs=400, seed=0)
    env.reset()
    preference = env.latent_state()["preference"]
    second = preference[:, 1] == 1.0
    assert torch.equal(preference[second], torch.eye(2, 16)[1].expand(int(second.sum()), 16))
    assert torch.equal(preference[~second], torch.eye(2, 16)[0].expand(int((~second).sum()), 16))
    assert 0.65 < float(second.float().mean()) < 0.85
    # The items are still the synthetic catalogue, and the reward rule runs on them.
    assert torch.equal(env.catalogue.embeddings, Catalogue.from_config(env.config).embeddings)
    torch.testing.assert_close(
        env.reward_table(), dynamics.affinity(env.catalogue.unit_embeddings, preference, 0.5)
    )


def test_catalogue_hook_replaces_the_synthetic_draw(monkeypatch):
    own = Catalogue.from_config(RecSimConfig(num_items=7, embedding_dim=3, catalogue_seed=9))

    class OwnItems(SimulatedUsersEnv):
        def _make_catalogue(self, config):
            return own

    def no_synthetic_draw(*args, **kwargs):
        raise AssertionError("the synthetic catalogue should not be drawn")

    monkeypatch.setattr(Catalogue, "from_config", no_synthetic_draw)
    env = OwnItems(RecSimConfig(num_items=7, embedding_dim=3), num_envs=2, seed=0)
    assert env.catalogue is own and env.population.preferences is own.centres
    env.rollout(2)


def test_hooks_must_match_the_config():
    class WrongItems(SimulatedUsersEnv):
        def _make_catalogue(self, config):
            return Catalogue.from_config(RecSimConfig(num_items=5, embedding_dim=16))

    with pytest.raises(
        ValueError,
        match=r"WrongItems._make_catalogue: expected item embeddings of shape \(100, 16\) "
        r"\(config num_items, embedding_dim\), got \(5, 16\)",
    ):
        WrongItems(RecSimConfig())

    class WrongUsers(SimulatedUsersEnv):
        def _make_population(self, config, catalogue):
            return UserPopulation.from_table(torch.ones(3, 4))

    with pytest.raises(
        ValueError, match=r"WrongUsers._make_population: expected preferences of shape \(M, 16\)"
    ):
        WrongUsers(RecSimConfig())

"""Actors and critics: shapes, dtypes, deterministic mode, log-probs, gradients, spec reading."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from drpo_rl.models import (
    PolicySpecs,
    TwoTowerScores,
    make_actor,
    make_categorical_actor,
    make_gaussian_actor,
    make_qvalue_critic,
    make_value_critic,
)


def _obs(batch, obs_dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(observation=torch.randn(batch, obs_dim, generator=g), batch_size=[batch])


def test_gaussian_actor_log_prob_matches_normal_formula():
    torch.manual_seed(0)
    actor = make_gaussian_actor(PolicySpecs(obs_dim=6, action_dim=3), log_std_init=-0.5)
    td = actor(_obs(5))
    dist = actor.get_dist(td)
    a = torch.randn(5, 3)
    sigma = torch.full((3,), -0.5).exp()
    expected = torch.distributions.Normal(td["loc"], sigma).log_prob(a).sum(-1)
    torch.testing.assert_close(dist.log_prob(a), expected)
    # the scale is state-independent: identical rows across states
    torch.testing.assert_close(td["scale"], sigma.expand(5, 3))


def test_gaussian_actor_depth_and_return_log_prob():
    actor = make_gaussian_actor(
        PolicySpecs(obs_dim=6, action_dim=3), depth=3, num_cells=32, return_log_prob=True
    )
    linears = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [32, 32, 32, 3]
    td = actor(_obs(4))
    torch.testing.assert_close(td["action_log_prob"], actor.get_dist(td).log_prob(td["action"]))
    with pytest.raises(ValueError, match="^depth: expected an integer >= 1, got 0$"):
        make_gaussian_actor(PolicySpecs(obs_dim=6, action_dim=3), depth=0)


def test_gaussian_actor_random_vs_deterministic_and_seed():
    actor = make_gaussian_actor(PolicySpecs(obs_dim=6, action_dim=3))
    torch.manual_seed(1)
    a1 = actor(_obs(4))["action"]
    torch.manual_seed(1)
    a2 = actor(_obs(4))["action"]
    torch.testing.assert_close(a1, a2)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = actor(_obs(4))
    torch.testing.assert_close(td["action"], td["loc"])
    assert not torch.allclose(a1, td["loc"])


def test_gaussian_actor_gradient_reaches_mean_and_log_std():
    actor = make_gaussian_actor(PolicySpecs(obs_dim=6, action_dim=3))
    td = actor(_obs(4))
    actor.get_dist(td).log_prob(torch.zeros(4, 3)).sum().backward()
    for name, p in actor.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("form", ["per_item", "two_tower"])
def test_categorical_actor_modes(form):
    emb = torch.randn(20, 4)
    specs = PolicySpecs(obs_dim=6, num_items=20, item_embeddings=emb)
    actor = make_categorical_actor(specs, form=form, return_log_prob=True)
    td = actor(_obs(8))
    assert td["action"].dtype == torch.int64 and td["action"].shape == (8,)
    assert ((td["action"] >= 0) & (td["action"] < 20)).all()
    logp = torch.log_softmax(td["logits"], -1).gather(-1, td["action"][:, None]).squeeze(-1)
    torch.testing.assert_close(td["action_log_prob"], logp)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = actor(_obs(8))
    torch.testing.assert_close(td["action"], td["logits"].argmax(-1))


def test_two_tower_scores_are_inner_products_with_fixed_catalogue():
    emb = torch.randn(20, 4)
    scores = TwoTowerScores(6, item_embeddings=emb)
    obs = torch.randn(3, 6)
    torch.testing.assert_close(scores(obs), scores.user_tower(obs) @ emb.T)
    assert not any(p is scores.item_embeddings for p in scores.parameters())
    learned = TwoTowerScores(6, item_embeddings=emb, learnable=True)
    assert any(p is learned.item_embeddings for p in learned.parameters())
    emb.add_(1.0)  # the module keeps its own copy
    assert not torch.allclose(scores.item_embeddings, emb)


def test_two_tower_without_table_needs_sizes():
    with pytest.raises(ValueError, match="num_items and embedding_dim"):
        TwoTowerScores(6)
    with pytest.raises(ValueError, match="two_tower"):
        make_categorical_actor(PolicySpecs(obs_dim=6, num_items=20), form="mlp")


def test_critics_shapes_and_inputs():
    cont = PolicySpecs(obs_dim=6, action_dim=3)
    disc = PolicySpecs(obs_dim=6, num_items=20)
    td = _obs(4)
    td["action"] = torch.randn(4, 3)
    assert make_value_critic(cont)(td.clone())["state_value"].shape == (4, 1)
    q = make_qvalue_critic(cont)
    assert set(q.in_keys) == {"observation", "action"}
    out = q(td.clone())["state_action_value"]
    assert out.shape == (4, 1)
    td2 = td.clone()
    td2["action"] = td["action"] + 1.0
    assert not torch.allclose(q(td2)["state_action_value"], out)  # Q depends on the action
    qd = make_qvalue_critic(disc)
    assert qd.in_keys == ["observation"]
    assert qd(_obs(4))["state_action_value"].shape == (4, 20)


def test_policy_specs_validation_and_dispatch():
    with pytest.raises(ValueError, match="exactly one of action_dim"):
        PolicySpecs(obs_dim=4)
    with pytest.raises(ValueError, match="exactly one of action_dim"):
        PolicySpecs(obs_dim=4, action_dim=2, num_items=3)
    with pytest.raises(ValueError, match="^obs_dim: expected an integer >= 1, got 0$"):
        PolicySpecs(obs_dim=0, action_dim=2)
    with pytest.raises(ValueError, match="^num_items: expected an integer >= 2 or None, got 1$"):
        PolicySpecs(obs_dim=4, num_items=1)
    with pytest.raises(ValueError, match="item_embeddings has 3 rows"):
        PolicySpecs(obs_dim=4, num_items=5, item_embeddings=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="make_categorical_actor"):
        make_gaussian_actor(PolicySpecs(obs_dim=4, num_items=5))
    assert make_actor(PolicySpecs(obs_dim=4, action_dim=2)).spec["action"].shape == (2,)
    assert make_actor(PolicySpecs(obs_dim=4, num_items=5)).spec["action"].n == 5

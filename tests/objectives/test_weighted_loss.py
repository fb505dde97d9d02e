"""TorchRL conventions of the shared base WeightedLogLikelihoodLoss, on a toy weight rule."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, OneHotCategorical, ProbabilisticActor

from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss, effective_sample_size

OBS, ACT, N = 5, 3, 12


class ScoreAsWeight(WeightedLogLikelihoodLoss):
    """w = score itself (signed): exercises negative weights and a metric."""

    metric_keys = ("weight_sum",)

    def _weights(self, score, valid, tensordict):
        return score * 1.0, {"weight_sum": score.sum()}


def gaussian_actor(seed=0, distribution_class=IndependentNormal):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * ACT), NormalParamExtractor()
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=distribution_class,
    )


def categorical_actor(n_items=7, seed=0, one_hot=False):
    torch.manual_seed(seed)
    net = nn.Linear(OBS, n_items)
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=OneHotCategorical if one_hot else torch.distributions.Categorical,
    )


def batch(n=N, seed=1, action=None):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=g),
            "action": torch.randn(n, ACT, generator=g) if action is None else action,
            "next": {"reward": torch.randn(n, 1, generator=g)},
        },
        [n],
    )


def test_base_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        WeightedLogLikelihoodLoss(gaussian_actor())


def test_rejects_bad_reduction_and_non_probabilistic_actor():
    with pytest.raises(ValueError) as err:
        ScoreAsWeight(gaussian_actor(), reduction="avg")
    assert str(err.value) == "reduction: expected one of ['none', 'mean', 'sum'], got 'avg'"
    det = TensorDictModule(nn.Linear(OBS, ACT), in_keys=["observation"], out_keys=["action"])
    with pytest.raises(ValueError, match="get_dist"):
        ScoreAsWeight(det)


def test_set_keys_unknown_raises_and_known_changes_in_keys():
    loss = ScoreAsWeight(gaussian_actor())
    assert set(loss.in_keys) == {"observation", "action", ("next", "reward")}
    assert loss.out_keys == ["loss_objective", "ess", "weight_sum"]
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(not_a_key="x")
    loss.set_keys(score="advantage", action="logged_action")
    assert set(loss.in_keys) == {"observation", "logged_action", "advantage"}
    data = batch()
    data["advantage"] = data["next", "reward"] * 2
    data["logged_action"] = data.pop("action")
    assert torch.allclose(loss(data)["weight_sum"], data["advantage"].sum())


def test_loss_value_matches_hand_computation_and_reductions():
    actor = gaussian_actor()
    data = batch()
    with torch.no_grad():
        dist = actor.get_dist(data.copy())
        log_prob = dist.log_prob(data["action"])
    w = data["next", "reward"].squeeze(-1)
    expected = -(w * log_prob)
    out = {
        r: ScoreAsWeight(actor, reduction=r)(data)["loss_objective"]
        for r in ("none", "mean", "sum")
    }
    torch.testing.assert_close(out["none"], expected)
    assert out["none"].shape == (N,)
    torch.testing.assert_close(out["mean"], expected.mean())
    torch.testing.assert_close(out["sum"], expected.sum())


def test_input_not_modified_and_kwargs_call_matches_tensordict_call():
    loss = ScoreAsWeight(gaussian_actor())
    data = batch()
    before = data.clone()
    out = loss(data)
    assert set(data.keys(True, True)) == set(before.keys(True, True))
    assert (data == before).all()
    kw = loss(
        observation=data["observation"],
        action=data["action"],
        next_reward=data["next", "reward"],
    )
    assert isinstance(kw, tuple) and len(kw) == 3
    for key, value in zip(loss.out_keys, kw, strict=True):
        torch.testing.assert_close(value, out[key])


def test_select_out_keys_kwargs_returns_the_loss_only():
    loss = ScoreAsWeight(gaussian_actor())
    loss.select_out_keys("loss_objective")
    data = batch()
    value = loss(
        observation=data["observation"], action=data["action"], next_reward=data["next", "reward"]
    )
    assert isinstance(value, torch.Tensor) and value.shape == ()
    value.backward()


def test_gradients_reach_actor_only_and_weights_are_detached():
    critic = TensorDictModule(
        nn.Linear(OBS + ACT, 1), in_keys=["obs_act"], out_keys=["state_action_value"]
    )
    loss = ScoreAsWeight(gaussian_actor())
    data = batch()
    data["next", "reward"].requires_grad_(True)
    loss(data)["loss_objective"].backward()
    assert data["next", "reward"].grad is None
    for name, p in loss.named_parameters():
        assert name.startswith("actor_network_params"), name
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # With a critic the critic's parameters are part of the module but get no gradient.
    critic_loss = ScoreAsWeight(gaussian_actor(), critic_network=critic)
    data = batch()
    data["obs_act"] = torch.cat([data["observation"], data["action"]], -1)
    critic_loss(data)["loss_objective"].backward()
    names = dict(critic_loss.named_parameters())
    assert any(n.startswith("critic_network_params") for n in names)
    for name, p in names.items():
        if name.startswith("critic_network_params"):
            assert p.grad is None, name
        else:
            assert p.grad is not None, name


def test_critic_score_is_critic_output():
    critic_net = nn.Linear(OBS + ACT, 1)
    critic = TensorDictModule(critic_net, in_keys=["obs_act"], out_keys=["state_action_value"])
    loss = ScoreAsWeight(gaussian_actor(), critic_network=critic)
    assert "obs_act" in loss.in_keys and ("next", "reward") not in loss.in_keys
    data = batch()
    data["obs_act"] = torch.cat([data["observation"], data["action"]], -1)
    with torch.no_grad():
        q = critic_net(data["obs_act"]).squeeze(-1)
    torch.testing.assert_close(loss.weights(data), q)
    assert "state_action_value" not in data.keys()


def test_normal_per_dimension_log_prob_is_summed():
    loss_ind = ScoreAsWeight(gaussian_actor(seed=3), reduction="none")
    loss_normal = ScoreAsWeight(
        gaussian_actor(seed=3, distribution_class=torch.distributions.Normal), reduction="none"
    )
    data = batch()
    torch.testing.assert_close(
        loss_ind(data)["loss_objective"], loss_normal(data)["loss_objective"]
    )


@pytest.mark.parametrize("trailing", [False, True])
def test_categorical_actor_item_ids(trailing):
    actor = categorical_actor()
    ids = torch.randint(
        0, 7, (N, 1) if trailing else (N,), generator=torch.Generator().manual_seed(2)
    )
    data = batch(action=ids)
    out = ScoreAsWeight(actor, reduction="none")(data)["loss_objective"]
    with torch.no_grad():
        logp = torch.log_softmax(actor.module[0].module(data["observation"]), -1)
    expected = -data["next", "reward"].squeeze(-1) * logp.gather(-1, ids.reshape(N, 1)).squeeze(-1)
    torch.testing.assert_close(out, expected)


def test_one_hot_categorical_actor():
    actor = categorical_actor(one_hot=True)
    ids = torch.randint(0, 7, (N,), generator=torch.Generator().manual_seed(2))
    data = batch(action=nn.functional.one_hot(ids, 7))
    out = ScoreAsWeight(actor, reduction="none")(data)["loss_objective"]
    with torch.no_grad():
        logp = torch.log_softmax(actor.module[0].module(data["observation"]), -1)
    expected = -data["next", "reward"].squeeze(-1) * logp[torch.arange(N), ids]
    torch.testing.assert_close(out, expected)


def test_clear_errors_on_missing_or_mismatched_entries():
    loss = ScoreAsWeight(gaussian_actor())
    data = batch()
    with pytest.raises(KeyError, match="score entry"):
        loss(data.exclude(("next", "reward")))
    bad = batch()
    bad["next", "reward"] = torch.randn(N, 1).long()
    with pytest.raises(ValueError, match="float tensor"):
        loss(bad)
    short = TensorDict(
        {
            "observation": data["observation"],
            "action": data["action"],
            ("next", "reward"): torch.randn(N - 2, 1),
        }
    )
    with pytest.raises(ValueError, match="batch shape"):
        loss(short)


def test_state_dict_round_trip():
    loss = ScoreAsWeight(gaussian_actor(seed=0))
    other = ScoreAsWeight(gaussian_actor(seed=5))
    data = batch()
    assert not torch.allclose(loss(data)["loss_objective"], other(data)["loss_objective"])
    other.load_state_dict(loss.state_dict())
    torch.testing.assert_close(loss(data)["loss_objective"], other(data)["loss_objective"])


def test_effective_sample_size_values():
    torch.testing.assert_close(effective_sample_size(torch.ones(5)), torch.tensor(5.0))
    torch.testing.assert_close(
        effective_sample_size(torch.tensor([0.0, 3.0, 0.0])), torch.tensor(1.0)
    )
    torch.testing.assert_close(effective_sample_size(torch.tensor([1.0, -1.0])), torch.tensor(2.0))
    assert effective_sample_size(torch.zeros(4)).item() == 0.0

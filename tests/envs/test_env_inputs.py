"""Bad input fails loudly; configs, catalogue, seeding and devices behave as documented."""

import math

import pytest
import torch

import envs
from envs import RecSimConfig, UserSessionConfig, make_env

# ---- actions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "action", "match"),
    [
        ("RecSimBanditDiscrete", torch.tensor([0, 1, 100]), r"item ids in \[0, 99\], got 100$"),
        ("RecSimBanditDiscrete", torch.tensor([0, -1, 2]), r"item ids in \[0, 99\]"),
        ("RecSimBanditDiscrete", torch.tensor([0.0, 1.0, 2.0]), r"integer item ids \(int64\)"),
        ("RecSimBanditDiscrete", torch.tensor([True, False, True]), r"integer item ids"),
        ("RecSimBanditDiscrete", torch.tensor([[0], [1], [2]]), r"shape \(3,\)"),
        ("RecSimBandit", torch.zeros(3, 15), r"shape \(3, 16\).*\(3, 15\)"),
        ("RecSimBandit", torch.zeros(3, 16, dtype=torch.int64), r"floating-point embedding"),
        ("RecSimBandit", torch.full((3, 16), math.nan), r"finite"),
        ("RecSimBandit", torch.zeros(3, 16), r"non-zero embedding.*users \[0, 1, 2\]"),
        ("UserSession", torch.tensor([0, 1, 200]), r"item ids in \[0, 99\]"),
    ],
)
def test_bad_actions_raise_value_error_saying_what_was_expected(name, action, match):
    env = make_env(name, num_envs=3, seed=0)
    td = env.reset()
    td["action"] = action
    with pytest.raises(ValueError, match=match):
        env.step(td)


def test_step_before_reset_is_an_error():
    env = make_env("RecSimBanditDiscrete", num_envs=2)
    td = env.fake_tensordict()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(td)


def test_embedding_action_decodes_to_max_cosine_item():
    env = make_env("RecSimBandit", num_envs=4, seed=0, privileged=("latent_reward", "item_rewards"))
    td = env.reset()
    action = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    e = env.catalogue.embeddings
    cos = torch.nn.functional.cosine_similarity(action[:, None, :], e[None], dim=-1)
    td["action"] = action * 7.0  # scale is irrelevant
    nxt = env.step(td)["next"]
    assert torch.equal(nxt["item"], cos.argmax(-1))
    want = td["item_rewards"].gather(-1, nxt["item"][:, None])
    # The step scores the shown item alone (O(d)); the table is one matrix product: the
    # same rule, rounded differently.
    torch.testing.assert_close(nxt["latent_reward"], want, rtol=1e-6, atol=1e-7)


# ---- configs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (RecSimConfig, "num_items", 0),
        (RecSimConfig, "num_items", 2.5),
        (RecSimConfig, "embedding_dim", 0),
        (RecSimConfig, "num_clusters", -1),
        (RecSimConfig, "delta", 0.0),
        (RecSimConfig, "delta", math.inf),
        (RecSimConfig, "reward_noise", -0.1),
        (RecSimConfig, "observation_noise", math.nan),
        (RecSimConfig, "cluster_spread", -1.0),
        (RecSimConfig, "user_spread", -1.0),
        (RecSimConfig, "zipf_exponent", -1.0),
        (RecSimConfig, "action_type", "slate"),
        (RecSimConfig, "catalogue_seed", "zero"),
        (UserSessionConfig, "max_length", 0),
        (UserSessionConfig, "drift_rate", 1.5),
        (UserSessionConfig, "fatigue_strength", -0.1),
        (UserSessionConfig, "fatigue_decay", 1.0),
        (UserSessionConfig, "patience", 0.0),
        (UserSessionConfig, "history_length", -1),
    ],
)
def test_invalid_config_names_the_field(cls, field, value):
    with pytest.raises(ValueError, match=rf"config field '{field}': expected"):
        cls(**{field: value})


@pytest.mark.parametrize(
    "weights", [(1.0, 2.0), (1.0,) * 7 + (-0.5,), (0.0,) * 8, (1.0,) * 7 + (math.nan,)]
)
def test_invalid_mixture_weights_name_the_field(weights):
    with pytest.raises(ValueError, match=r"config field 'mixture_weights'"):
        RecSimConfig(mixture_weights=weights)


def test_unknown_override_lists_valid_fields_and_unknown_name():
    with pytest.raises(ValueError, match=r"'max_length'.*valid fields: \['num_items'"):
        make_env("RecSimBandit", max_length=3)
    with pytest.raises(ValueError, match=r"unknown environment 'Nope'.*RecSimBandit"):
        make_env("Nope")
    with pytest.raises(ValueError, match="num_envs"):
        make_env("RecSimBandit", num_envs=0)


def test_config_is_frozen_and_names_resolve():
    env = make_env("drpo_rl/UserSession-v0", num_envs=2, max_length=4)
    assert isinstance(env, envs.UserSession) and env.config.max_length == 4
    with pytest.raises(AttributeError):
        env.config.max_length = 5
    assert envs.list_envs()[:3] == ["RecSimBandit", "RecSimBanditDiscrete", "UserSession"]
    assert make_env("UserSession", action_type="embedding").action_spec.shape == (1, 16)
    weights = RecSimConfig(num_clusters=2, mixture_weights=[1, 3]).mixture_weights
    assert weights == (1.0, 3.0)


# ---- catalogue -------------------------------------------------------------------------


def test_catalogue_depends_only_on_catalogue_seed():
    a = make_env("RecSimBandit", seed=1).catalogue
    b = make_env("UserSession", seed=2).catalogue
    c = make_env("RecSimBandit", seed=1, catalogue_seed=1).catalogue
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.popularity, b.popularity)
    assert not torch.equal(a.embeddings, c.embeddings)


def test_catalogue_zipf_and_mixture():
    env = make_env("RecSimBandit", zipf_exponent=1.5, num_items=200, cluster_spread=0.05)
    cat = env.catalogue
    ranked = cat.popularity.sort(descending=True).values
    torch.testing.assert_close(ranked[:5] / ranked[0], torch.arange(1.0, 6.0).pow(-1.5))
    torch.testing.assert_close(cat.popularity.sum(), torch.tensor(1.0))
    # Items sit near their own centre: closer to it than to any other.
    nearest = (cat.embeddings @ cat.centres.T).argmax(-1)
    assert (nearest == cat.cluster).float().mean() > 0.95
    assert set(cat.cluster.tolist()) == set(range(8))
    only_two = make_env("RecSimBandit", mixture_weights=(1.0, 1.0) + (0.0,) * 6).catalogue
    assert set(only_two.cluster.tolist()) <= {0, 1}


def test_oracle_clearly_beats_popular_and_random_items():
    env = make_env("RecSimBandit", num_envs=4096, seed=0)
    env.reset()
    rewards = env.reward_table()
    oracle = rewards.max(-1).values.mean()
    random_item = rewards.mean()
    popular = rewards[:, env.catalogue.popularity.argmax()].mean()
    popularity_sampled = (rewards * env.catalogue.popularity).sum(-1).mean()
    assert oracle > 0.75
    for other in (random_item, popular, popularity_sampled):
        assert oracle - other > 0.5


# ---- seeding and devices ---------------------------------------------------------------


def test_set_seed_then_reset_equals_constructing_with_seed():
    a = make_env("UserSession", num_envs=3, seed=21)
    b = make_env("UserSession", num_envs=3)
    b.set_seed(21)
    assert (a.reset() == b.reset()).all()


def test_env_rng_is_independent_of_torch_global_rng():
    a = make_env("RecSimBandit", num_envs=3, seed=0)
    torch.manual_seed(123)
    obs_a = a.reset()["observation"]
    b = make_env("RecSimBandit", num_envs=3, seed=0)
    torch.manual_seed(456)
    assert torch.equal(obs_a, b.reset()["observation"])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["RecSimBandit", "UserSession"])
def test_everything_lives_on_env_device(device, name):
    env = make_env(name, num_envs=3, device=device, seed=0)
    td = env.rollout(3, break_when_any_done=False)
    assert env.device == torch.device(device)
    for value in td.values(True, True):
        assert value.device.type == torch.device(device).type
    cat = env.catalogue
    for tensor in (cat.embeddings, cat.popularity, cat.cluster):
        assert tensor.device.type == torch.device(device).type


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_and_cpu_share_the_catalogue():
    cpu = make_env("RecSimBandit").catalogue.embeddings
    cuda = make_env("RecSimBandit", device="cuda").catalogue.embeddings
    torch.testing.assert_close(cuda.cpu(), cpu)

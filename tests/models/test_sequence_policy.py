"""The SASRec-style sequence policy: causality, padding, distributions, registry option,
training DRPO and BC on UserSession logs from SliceSampler batches, evaluation, checkpoints."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import SliceSampler
from torchrl.envs.utils import ExplorationType, set_exploration_type

from drpo_rl.algorithms import build
from drpo_rl.benchmark import make_config, run_benchmark
from drpo_rl.benchmark.policies import load_trained_run
from drpo_rl.checkpoints import load_policy
from drpo_rl.data import generate_logs
from drpo_rl.data.behavior import RandomPolicy
from drpo_rl.evaluation import evaluate
from drpo_rl.models import (
    PolicySpecs,
    SessionEncoder,
    SessionLayout,
    categorical_bc_module,
    make_sequence_actor,
)
from envs import make_env

D, K, N = 4, 3, 12
LAYOUT = SessionLayout(embedding_dim=D, history_length=K)
ITEMS = PolicySpecs(
    obs_dim=LAYOUT.obs_dim,
    num_items=N,
    item_embeddings=torch.randn(N, D, generator=torch.Generator().manual_seed(0)),
)
EMBEDDING = PolicySpecs(obs_dim=LAYOUT.obs_dim, action_dim=D)
SMALL = {"seq_dim": 16, "seq_layers": 1, "num_cells": 32}


def _observation(batch: int, filled: int, seed: int = 0) -> torch.Tensor:
    """UserSession-layout rows with ``filled`` of the K history slots seen (most recent first)."""
    g = torch.Generator().manual_seed(seed)
    user, step = torch.randn(batch, D, generator=g), torch.rand(batch, 1, generator=g)
    items = torch.randn(batch, K, D, generator=g)
    rewards = torch.rand(batch, K, generator=g)
    items[:, filled:], rewards[:, filled:] = 0.0, 0.0
    return torch.cat([user, items.flatten(1), rewards, step], dim=1)


def _encoder(seed: int = 0) -> SessionEncoder:
    torch.manual_seed(seed)
    return SessionEncoder(LAYOUT, model_dim=8, layers=2, heads=2)


def test_output_at_t_is_independent_of_later_positions():
    encoder = _encoder()
    tokens, empty = encoder.tokens(_observation(5, filled=K))
    out = encoder.sequence(tokens, empty)
    for t in range(K + 1):
        changed = tokens.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :]) * 10
        again = encoder.sequence(changed, empty)
        torch.testing.assert_close(again[:, : t + 1], out[:, : t + 1])
        if t < K:  # the later positions did change: the check can fail
            assert not torch.allclose(again[:, t + 1 :], out[:, t + 1 :])


def test_empty_slots_are_masked_out():
    encoder = _encoder()
    obs = _observation(6, filled=1)
    tokens, empty = encoder.tokens(obs)
    # Time order: the K - 1 oldest slots are empty, the one seen item and "now" are not.
    assert empty.tolist() == [[True] * (K - 1) + [False, False]] * 6
    out = encoder.sequence(tokens, empty)
    assert torch.isfinite(out).all()
    junk = tokens.clone()
    junk[empty] = torch.randn_like(junk[empty]) * 100
    torch.testing.assert_close(encoder.sequence(junk, empty)[:, K - 1 :], out[:, K - 1 :])
    # In the observation: an empty slot's reward column does not reach the output either.
    noisy = obs.clone()
    noisy[:, D + K * D + 1 : D + K * D + K] = 0.9
    torch.testing.assert_close(encoder(noisy), encoder(obs))
    # Whereas the seen item's reward does.
    seen = obs.clone()
    seen[:, D + K * D] += 0.5
    assert not torch.allclose(encoder(seen), encoder(obs))


def test_session_start_with_no_history_is_finite_and_depends_on_the_user():
    encoder = _encoder()
    obs = _observation(4, filled=0)
    assert encoder.tokens(obs)[1][:, :K].all()
    out = encoder(obs)
    assert out.shape == (4, 8) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])


def test_categorical_sequence_actor_distribution():
    torch.manual_seed(0)
    actor = make_sequence_actor(ITEMS, model_dim=8, layers=1, return_log_prob=True)
    obs = torch.stack([_observation(3, filled=f, seed=f) for f in range(2)])  # [2, 3, obs]
    td = actor(TensorDict(observation=obs, batch_size=[2, 3]))
    assert td["logits"].shape == (2, 3, N)
    assert td["action"].shape == (2, 3) and td["action"].dtype == torch.int64
    expected = td["logits"].log_softmax(-1).gather(-1, td["action"].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(td["action_log_prob"], expected)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        greedy = actor(td.exclude("action"))["action"]
    assert torch.equal(greedy, td["logits"].argmax(-1))
    # The head scores items by a dot product with the catalogue embeddings (a buffer).
    scores = actor.module[0].module[1]
    torch.testing.assert_close(scores.item_embeddings, ITEMS.item_embeddings)
    # BC's view of the actor shares its parameters and writes the same logits.
    bc_view = categorical_bc_module(actor)
    torch.testing.assert_close(bc_view(td.exclude("action"))["action"], td["logits"])


def test_gaussian_sequence_actor_distribution():
    torch.manual_seed(0)
    actor = make_sequence_actor(EMBEDDING, model_dim=8, layers=1, log_std_init=-1.0)
    td = actor(TensorDict(observation=_observation(5, filled=2), batch_size=[5]))
    assert td["loc"].shape == td["scale"].shape == td["action"].shape == (5, D)
    torch.testing.assert_close(td["scale"], torch.full((5, D), -1.0).exp())
    expected = torch.distributions.Normal(td["loc"], td["scale"]).log_prob(td["action"]).sum(-1)
    torch.testing.assert_close(actor.get_dist(td).log_prob(td["action"]), expected)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert torch.equal(actor(td)["action"], td["loc"])


def test_bad_layouts_and_options_are_refused():
    layout_error = r"observation: expected d \+ K d \+ K \+ 1 = 5 \(K \+ 1\) columns"
    with pytest.raises(ValueError, match=layout_error):
        make_sequence_actor(PolicySpecs(obs_dim=21, action_dim=D))
    with pytest.raises(ValueError, match="item_embeddings: expected the catalogue embeddings"):
        make_sequence_actor(PolicySpecs(obs_dim=LAYOUT.obs_dim, num_items=N))
    with pytest.raises(ValueError, match="form: applies to item-id actions only"):
        make_sequence_actor(EMBEDDING, form="two_tower")
    encoder = _encoder()
    with pytest.raises(ValueError, match=r"observation: expected 20 columns \(d=4, K=3\)"):
        encoder(torch.zeros(2, 19))
    with pytest.raises(ValueError, match="heads: expected a divisor of model_dim=8, got 3"):
        SessionEncoder(LAYOUT, model_dim=8, heads=3)
    with pytest.raises(ValueError, match="seq_heads: expected a divisor of seq_dim=16, got 3"):
        build("drpo", ITEMS, policy="transformer", seq_dim=16, seq_heads=3)
    with pytest.raises(ValueError, match=r"policy: expected one of \['mlp', 'transformer'\]"):
        build("bc", ITEMS, policy="lstm")
    with pytest.raises(ValueError, match="'transformer' is supported by adapt-bc, bc, drpo, drpo"):
        build("iql", ITEMS, policy="transformer")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['seq_dim'\] for algorithm 'awr'"):
        build("awr", ITEMS, seq_dim=16)
    # A benchmark config refuses it when it is made, naming the algorithm.
    with pytest.raises(ValueError, match="hparams of 'awr': policy: 'transformer' is supported"):
        make_config("tiny", algorithms=("drpo", "awr"), hparams={"awr": {"policy": "transformer"}})


def test_registry_transformer_defaults_and_heads():
    algo = build("drpo", ITEMS, policy="transformer", **SMALL)
    encoder, scores = algo.policy.module[0].module
    assert isinstance(encoder, SessionEncoder) and len(encoder.blocks.layers) == 1
    assert hasattr(scores, "item_embeddings")  # unset head: the dot product (two-tower)
    assert algo.hparams["seq_heads"] == 2 and algo.hparams["seq_dropout"] == 0.0
    per_item = build("bc", ITEMS, policy="transformer", head="per_item", **SMALL).policy
    assert per_item.module[0].module[1][-1].out_features == N
    mlp = build("drpo", ITEMS).policy.module[0].module  # the MLP's default head is unchanged
    assert mlp[-1].out_features == N


@pytest.fixture(scope="module")
def session_logs(tmp_path_factory):
    """Extreme-scenario UserSession logs, sampled as 32 slices of 8 steps of sessions."""
    sampler = SliceSampler(slice_len=8, traj_key=("collector", "traj_ids"))
    path = tmp_path_factory.mktemp("sessions") / "logs"
    return generate_logs(
        "UserSession",
        "extreme",
        4096,
        path=path,
        seed=0,
        progress=False,
        batch_size=256,
        sampler=sampler,
    )


def test_slice_batches_are_whole_session_pieces(session_logs):
    batch = session_logs.sample().reshape(32, 8)
    traj = batch["collector", "traj_ids"]
    assert (traj == traj[:, :1]).all()  # one session per slice
    step = batch["observation"][..., -1]  # step / max_length grows by one step along a slice
    torch.testing.assert_close(step[:, 1:] - step[:, :-1], torch.full((32, 7), 1 / 20))


@pytest.mark.parametrize("algorithm", ["drpo", "bc"])
def test_transformer_learns_from_slice_batches(session_logs, algorithm):
    """Measured (200 steps, 256 users, seeds 0/1): uniform 1.30; DRPO 3.48/3.47, BC 2.96/2.78."""
    env = make_env("UserSession", num_envs=2, seed=0)
    uniform = evaluate(RandomPolicy.from_env(env), "UserSession", num_users=256, seed=100)
    for seed in (0, 1):
        torch.manual_seed(seed)
        algo = build(algorithm, env, policy="transformer", lr=1e-3, **SMALL)
        for _ in range(200):
            algo.update(session_logs.sample())
        trained = evaluate(algo.policy, "UserSession", num_users=256, seed=100)
        assert trained["return"] > uniform["return"] + 0.8, (seed, trained, uniform)


def test_checkpoint_round_trip_and_evaluation(tmp_path):
    env = make_env("UserSession", num_envs=2, seed=0)
    hparams = {"policy": "transformer", **SMALL}
    torch.manual_seed(0)
    trained = build("drpo", env, **hparams).policy
    torch.save(trained.state_dict(), tmp_path / "drpo.pt")
    loaded = load_policy("drpo", env, tmp_path / "drpo.pt", hparams)
    rollout_env = make_env("UserSession", num_envs=16, seed=3)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first = rollout_env.rollout(6, trained, break_when_any_done=False)
        rollout_env.set_seed(3)
        second = rollout_env.rollout(6, loaded, break_when_any_done=False)
    assert torch.equal(first["action"], second["action"])
    # The history in the observation changes what the policy sees along a session.
    assert (first["observation"][:, 1:, 16:] != 0).any()
    a = evaluate(trained, "UserSession", num_users=64, seed=5)
    b = evaluate(loaded, "UserSession", num_users=64, seed=5)
    assert a == b and a["length"] >= 1
    with pytest.raises(ValueError, match="does not fit a 'drpo' policy"):
        load_policy("drpo", env, tmp_path / "drpo.pt", {})


def test_dropout_is_off_for_deterministic_actions_only():
    torch.manual_seed(0)
    actor = make_sequence_actor(ITEMS, model_dim=8, layers=1, dropout=0.5)
    td = TensorDict(observation=_observation(8, filled=2), batch_size=[8])
    sampled = [actor(td.clone())["logits"] for _ in range(2)]
    assert not torch.allclose(*sampled)  # train() mode, random interaction: dropout acts
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first, second = (actor(td.clone())["logits"] for _ in range(2))
    torch.testing.assert_close(first, second)
    actor.eval()
    torch.testing.assert_close(actor(td.clone())["logits"], first)
    assert actor.training is False and actor.module[0].module[0].blocks.training is False


def test_encoder_exports_with_a_dynamic_batch():
    encoder = _encoder()
    # min=3: the attention's mask-shape checks specialise a batch of 2 ([2 * heads, L, L]).
    batch = torch.export.Dim("batch", min=3)
    exported = torch.export.export(
        encoder, (_observation(4, filled=1),), dynamic_shapes=({0: batch},)
    )
    obs = _observation(7, filled=2, seed=3)
    torch.testing.assert_close(exported.module()(obs), encoder(obs))


@pytest.mark.slow  # about 30 s of inductor compilation on 2 cores
# torch's own modules, imported by torch.compile, use the deprecated jit decorator.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_actor_matches_eager():
    torch.manual_seed(0)
    actor = make_sequence_actor(ITEMS, model_dim=8, layers=1)
    td = TensorDict(observation=_observation(6, filled=2), batch_size=[6])
    compiled = torch.compile(actor.module[0])
    torch.testing.assert_close(compiled(td.clone())["logits"], actor.module[0](td)["logits"])


def test_benchmark_trains_reloads_and_refuses_a_flat_observation(tmp_path):
    transformer = {"policy": "transformer", "seq_dim": 16, "seq_layers": 1}
    config = make_config(
        "tiny",
        env="UserSession",
        references=(),
        hparams={"drpo": transformer, "bc": transformer},
    )
    run_benchmark(config, tmp_path, progress=False, echo=lambda *args: None)
    run = load_trained_run(tmp_path / "runs/medium/drpo/seed-0.json")
    assert run.record["hparams"]["policy"] == "transformer"
    assert isinstance(run.policy.module[0].module[0], SessionEncoder)
    again = evaluate(run.policy, run.env_spec, num_users=run.eval_users, seed=run.eval_seed)
    assert again == run.record["metrics"]
    # A bandit observation carries no history: refused when the config is made.
    with pytest.raises(ValueError, match="hparams of 'drpo': policy: 'transformer' reads the"):
        make_config("tiny", hparams={"drpo": transformer})

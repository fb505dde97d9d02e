"""Every offline registry algorithm trains on session logs; the filter's score is
configurable, return-to-go by default on sessions, and truncation is not termination."""

import pytest
import torch
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from drpo_rl.algorithms import build, offline_algorithms
from drpo_rl.algorithms.registry import check_logged_keys, session_defaults
from drpo_rl.algorithms.scores import td_scored
from drpo_rl.algorithms.transitions import complete_terminal_transitions
from drpo_rl.benchmark.presets import MYOPIA_WORLD
from drpo_rl.benchmark.training import learner_view
from drpo_rl.data import generate_logs
from drpo_rl.models import PolicySpecs
from envs import make_env

WORLD = {**MYOPIA_WORLD, "num_items": 40, "embedding_dim": 8, "max_length": 8}


@pytest.fixture(scope="module")
def session_rows(tmp_path_factory):
    logs = generate_logs(
        "UserSession",
        "medium",
        32 * 16,
        path=tmp_path_factory.mktemp("logs") / "medium",
        seed=0,
        num_envs=32,
        progress=False,
        **WORLD,
    )
    return logs[:]


@pytest.fixture(scope="module")
def specs():
    return PolicySpecs.from_env(make_env("UserSession", **WORLD))


def test_the_offline_set_is_the_issue_s_twelve():
    assert set(offline_algorithms()) == {
        *("drpo", "drpo-exp", "drpo-q", "adapt-bc", "apg", "bc", "awr", "crr"),
        *("asymre", "bppo", "iql", "cql"),
    }


@pytest.mark.parametrize("name", offline_algorithms())
def test_every_offline_algorithm_trains_on_session_logs(name, session_rows, specs):
    torch.manual_seed(0)
    hparams = {**session_defaults(name), "num_cells": 16, "batch_size": 64}
    check_logged_keys(name, hparams, set(session_rows.keys(True, True)))
    algo = build(name, specs, **hparams)
    rows = learner_view(session_rows).reshape(-1)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(rows.numel()), batch_size=64)
    buffer.extend(rows)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    for _ in range(3):
        terms = algo.update(buffer.sample())
    assert terms and all(torch.isfinite(v).all() for v in terms.values())
    after = list(algo.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_sessions_default_to_return_to_go_scores():
    assert session_defaults("drpo") == {"score": "return_to_go"}
    assert session_defaults("drpo-q") == session_defaults("bc") == {}
    algo = build("drpo", PolicySpecs(obs_dim=4, num_items=5), score="return_to_go")
    assert algo.loss_modules["policy"].tensor_keys.score == "return_to_go"
    with pytest.raises(ValueError, match=r"score: expected one of \['reward', 'return_to_go'\]"):
        build("drpo", PolicySpecs(obs_dim=4, num_items=5), score="td")
    with pytest.raises(ValueError, match='needs baseline="value"'):
        build("awr", PolicySpecs(obs_dim=4, num_items=5), score="td", baseline="mean")


def test_filtering_by_reward_and_by_return_to_go_keep_different_rows(session_rows, specs):
    rows = learner_view(session_rows).reshape(-1)
    kept = {}
    for score in ("reward", "return_to_go"):
        algo = build("drpo", specs, score=score, kappa=0.2, adaptive=False)
        kept[score] = algo.loss_modules["policy"].weights(rows) > 0
    overlap = (kept["reward"] & kept["return_to_go"]).sum() / kept["reward"].sum()
    assert 0.0 < overlap < 0.9
    # Return-to-go keeps earlier steps of longer sessions: the value shows later.
    step = session_rows["step_count"].reshape(-1)
    assert step[kept["return_to_go"]].float().mean() < step[kept["reward"]].float().mean()


def test_truncated_rows_bootstrap_and_terminated_rows_do_not(session_rows):
    rows = complete_terminal_transitions(session_rows.reshape(-1))
    scored = td_scored(lambda td: torch.ones(td.shape[0], 1), gamma=0.5)(rows)
    reward = rows["next", "reward"][:, 0]
    terminated = rows["next", "terminated"][:, 0]
    truncated = rows["next", "truncated"][:, 0]
    assert terminated.any() and truncated.any()
    score = scored["td_score"][:, 0]
    torch.testing.assert_close(score[terminated], reward[terminated])
    torch.testing.assert_close(score[~terminated], reward[~terminated] + 0.5)  # V(s') = 1
    # The logs' own terminated flag reaches the TD losses, not done.
    assert torch.equal(rows["next", "terminated"], session_rows.reshape(-1)["next", "terminated"])


def test_missing_propensities_are_refused_before_training(session_rows):
    logged = set(session_rows.exclude("behavior_log_prob").keys(True, True))
    with pytest.raises(ValueError, match="bppo: needs the logged 'behavior_log_prob'"):
        check_logged_keys("bppo", {}, logged)
    check_logged_keys("bc", {}, logged)  # BC reads no propensity


def test_td_advantage_trains_its_value_on_the_bootstrapped_target(session_rows, specs):
    torch.manual_seed(0)
    algo = build("awr", specs, score="td", gamma=0.9, num_cells=16)
    rows = learner_view(session_rows).reshape(-1)
    first = algo.update(rows)
    for _ in range(30):
        last = algo.update(rows)
    assert torch.isfinite(last["loss_objective"])
    assert last["loss_value"] < first["loss_value"]

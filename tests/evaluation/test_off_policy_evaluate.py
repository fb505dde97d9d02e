"""off_policy_evaluate on real log layouts: generated bandit and session logs, embedding and
item-id policies, bad input, and estimates against the simulator's truth."""

import json
import math
import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.modules import ProbabilisticActor

from drpo_rl.data import generate_logs
from drpo_rl.evaluation import evaluate, fit_reward_model, off_policy_evaluate
from drpo_rl.evaluation.off_policy.logged import read_logs
from drpo_rl.evaluation.off_policy.names import BANDIT_ESTIMATORS, SESSION_ESTIMATORS
from drpo_rl.models import PolicySpecs, make_actor
from envs import EnvSpec


def constant_item(item: int) -> TensorDictModule:
    return TensorDictModule(
        lambda obs: torch.full(obs.shape[:1], item, dtype=torch.long),
        in_keys=["observation"],
        out_keys=["action"],
    )


def tiny_logs(n=6, num_items=3):
    item = torch.arange(n) % num_items
    return TensorDict(
        {
            "observation": torch.zeros(n, 2),
            "action": item,
            "behavior_log_prob": torch.full((n,), 1 / num_items).log(),
            ("next", "reward"): (item == 1).float()[:, None],
        },
        [n],
    )


@pytest.fixture(scope="module")
def bandit_logs(tmp_path_factory):
    path = tmp_path_factory.mktemp("ope") / "discrete"
    return generate_logs(
        "RecSimBanditDiscrete", "medium", 3000, path=path, seed=0, num_items=20, progress=False
    )


@pytest.fixture(scope="module")
def embedding_logs(tmp_path_factory):
    path = tmp_path_factory.mktemp("ope") / "embedding"
    return generate_logs(
        "RecSimBandit", "medium", 2000, path=path, seed=1, num_items=20, progress=False
    )


@pytest.fixture(scope="module")
def session_logs(tmp_path_factory):
    path = tmp_path_factory.mktemp("ope") / "sessions"
    return generate_logs(
        "UserSession", "medium", 1600, path=path, seed=2, num_envs=40, num_items=20, progress=False
    )


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.0, r"got p = 0 \(p <= 0\) at row 2"),
        (-0.2, r"got p = -0.2 \(p <= 0\) at row 2"),
        (1.5, r"got p = 1.5 \(p > 1\) at row 2"),
        (math.nan, r"got p = nan \(NaN\) at row 2"),
    ],
)
def test_bad_propensities_are_refused_naming_the_row(value, message):
    logs = tiny_logs()
    logs["propensity"] = torch.full((6,), 1 / 3)
    logs["propensity"][2] = value
    with pytest.raises(
        ValueError, match=r"logs\['propensity'\]: expected probabilities in \(0, 1\], " + message
    ):
        off_policy_evaluate(
            constant_item(1), logs, num_items=3, propensity_key="propensity", log_propensity=False
        )


def test_zero_propensity_as_log_minus_infinity_is_refused():
    logs = tiny_logs()
    logs["behavior_log_prob"][4] = -math.inf
    with pytest.raises(
        ValueError, match=r"log-propensities of probabilities in \(0, 1\], got p = 0 .* at row 4"
    ):
        off_policy_evaluate(constant_item(1), logs, num_items=3)


def test_missing_propensity_is_refused():
    logs = tiny_logs().exclude("behavior_log_prob")
    with pytest.raises(ValueError, match="expected the key 'behavior_log_prob'.*missing"):
        off_policy_evaluate(constant_item(1), logs, num_items=3)


def test_action_space_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"policy: expected item ids in \[0, 3\).*got 7"):
        off_policy_evaluate(constant_item(7), tiny_logs(), num_items=3)
    actor = make_actor(PolicySpecs(obs_dim=2, num_items=5))
    with pytest.raises(ValueError, match="distribution has 5 items, the logs 3"):
        off_policy_evaluate(actor, tiny_logs(), num_items=3, deterministic=False)
    with pytest.raises(ValueError, match=r"logs: expected item ids in \[0, 2\).*got 2 at row 2"):
        off_policy_evaluate(constant_item(1), tiny_logs(), num_items=2)


def test_horizon_one_estimators_are_refused_on_sessions(session_logs):
    with pytest.raises(ValueError, match="'ips' is a horizon-1 estimator.*sessions of up to"):
        off_policy_evaluate(constant_item(0), session_logs, estimators=("ips",))


def test_noisy_embedding_logs_are_refused(tmp_path):
    logs = generate_logs(
        "RecSimBandit",
        "medium",
        200,
        path=tmp_path / "noisy",
        seed=0,
        num_items=20,
        action_noise=0.1,
        progress=False,
    )
    with pytest.raises(ValueError, match="action_noise > 0, so 'behavior_log_prob' is a density"):
        off_policy_evaluate(constant_item(0), logs)


def test_reward_model_of_other_logs(bandit_logs, tmp_path):
    other = generate_logs(
        "RecSimBanditDiscrete",
        "extreme",
        500,
        path=tmp_path / "other",
        seed=5,
        num_items=20,
        progress=False,
    )
    model = fit_reward_model(other)
    with pytest.warns(UserWarning, match="reward_model: fitted on other logs"):
        off_policy_evaluate(constant_item(0), bandit_logs, estimators=("dm",), reward_model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        off_policy_evaluate(constant_item(0), other, estimators=("dm",), reward_model=model)
    with pytest.raises(
        ValueError, match="made for observations of width 16 and 20 items, the logs have 2 and 3"
    ):
        off_policy_evaluate(
            constant_item(0), tiny_logs(), estimators=("dm",), reward_model=model, num_items=3
        )


# --- what the estimates are -------------------------------------------------------------


def test_behaviour_target_has_unit_weights_and_ips_is_the_logged_mean(bandit_logs):
    """A target that plays the behaviour's own item probabilities: w = 1, IPS = SNIPS = the
    logs' mean reward, ESS = every row."""
    rows = bandit_logs[:]

    def logits(lp, a):
        # The logged propensity on the logged item, the rest spread over the other items.
        rest = torch.log1p(-lp.exp().clamp(max=1 - 1e-6)) - math.log(19)
        return rest[:, None].expand(-1, 20).scatter(1, a[:, None], lp[:, None])

    module = TensorDictModule(logits, in_keys=["behavior_log_prob", "action"], out_keys=["logits"])
    actor = ProbabilisticActor(
        module, in_keys=["logits"], distribution_class=torch.distributions.Categorical
    )
    out = off_policy_evaluate(actor, rows, num_items=20, deterministic=False, estimators=("ips",))
    mean = rows["next", "reward"].double().mean().item()
    assert out["ips"].diagnostics["max_weight"] == pytest.approx(1.0, abs=1e-3)
    assert out["ips"].value == pytest.approx(mean, rel=1e-3)


def test_deterministic_policy_weights_are_indicator_over_propensity(bandit_logs):
    rows = bandit_logs[:]
    out = off_policy_evaluate(constant_item(3), bandit_logs, estimators=("ips", "snips"), seed=0)
    shown = rows["action"] == 3
    w = shown.double() / rows["behavior_log_prob"].double().exp()
    reward = rows["next", "reward"].double().squeeze(-1)
    assert out["ips"].value == pytest.approx((w * reward).mean().item(), rel=1e-6)
    assert out["snips"].value == pytest.approx(((w * reward).sum() / w.sum()).item(), rel=1e-6)
    d = out["ips"].diagnostics
    assert d["max_weight"] == pytest.approx(w.max().item(), rel=1e-6)
    assert d["ess"] == pytest.approx((w.sum() ** 2 / w.pow(2).sum()).item(), rel=1e-6)
    assert d["num_sessions"] == 3000 and d["clipped_share"] == 0.0


def test_every_estimator_covers_the_oracle_free_truth_and_serialises(bandit_logs):
    """A trained-free item-id actor, evaluated off-policy and online: the doubly robust
    and self-normalised estimates lie near the truth, and results are JSON-ready."""
    torch.manual_seed(0)
    actor = make_actor(PolicySpecs(obs_dim=16, num_items=20))
    out = off_policy_evaluate(actor, bandit_logs, num_bootstrap=300)
    assert list(out) == list(BANDIT_ESTIMATORS)
    spec = EnvSpec("RecSimBanditDiscrete", {"num_items": 20})
    truth = evaluate(actor, spec, num_users=20_000, seed=123)["reward"]
    for name in ("snips", "dr", "sndr"):
        assert abs(out[name].value - truth) < 0.05, (name, out[name].value, truth)
    for e in out.values():
        assert e.low <= e.value <= e.high
    json.dumps({k: e.to_dict() for k, e in out.items()})
    assert out["dm"].diagnostics["reward_model_rmse"] < 0.2


def test_same_seed_same_numbers(bandit_logs):
    actor = make_actor(PolicySpecs(obs_dim=16, num_items=20))
    first = off_policy_evaluate(
        actor, bandit_logs, estimators=("dr", "snips"), num_bootstrap=100, seed=3
    )
    again = off_policy_evaluate(
        actor, bandit_logs, estimators=("dr", "snips"), num_bootstrap=100, seed=3
    )
    assert {k: e.to_dict() for k, e in first.items()} == {k: e.to_dict() for k, e in again.items()}


def test_the_callers_random_stream_is_left_alone(embedding_logs):
    actor = make_actor(PolicySpecs(obs_dim=16, action_dim=16))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    off_policy_evaluate(
        actor,
        embedding_logs,
        estimators=("dr",),
        deterministic=False,
        mc_samples=8,
        num_bootstrap=50,
    )
    assert torch.equal(torch.rand(3), expected)


def test_t_and_bootstrap_intervals_agree_roughly(bandit_logs):
    actor = constant_item(0)
    t = off_policy_evaluate(actor, bandit_logs, estimators=("snips",), interval="t")["snips"]
    boot = off_policy_evaluate(actor, bandit_logs, estimators=("snips",), num_bootstrap=500)[
        "snips"
    ]
    assert t.value == boot.value and t.interval == "t" and boot.interval == "bootstrap"
    assert (t.high - t.low) == pytest.approx(boot.high - boot.low, rel=0.3)


def test_gaussian_policy_at_item_level(embedding_logs):
    """Deterministic: the decoded mean, weights 1[item]/mu. Stochastic: Monte-Carlo item
    shares with their error reported."""
    torch.manual_seed(1)
    actor = make_actor(PolicySpecs(obs_dim=16, action_dim=16))
    det = off_policy_evaluate(actor, embedding_logs, estimators=("ips",))["ips"]
    assert "mc_samples" not in det.diagnostics
    rnd = off_policy_evaluate(
        actor, embedding_logs, estimators=("ips", "dr"), deterministic=False, mc_samples=64
    )
    assert rnd["ips"].diagnostics["mc_samples"] == 64
    assert 0 < rnd["ips"].diagnostics["mc_std_error"] < 0.1
    again = off_policy_evaluate(
        actor, embedding_logs, estimators=("ips", "dr"), deterministic=False, mc_samples=64
    )
    assert {k: e.to_dict() for k, e in again.items()} == {k: e.to_dict() for k, e in rnd.items()}
    # A sampled Gaussian spreads over more items than its mean: weights are smaller.
    assert rnd["ips"].diagnostics["max_weight"] <= det.diagnostics["max_weight"] + 1e-9


def test_sessions_are_cut_and_incomplete_ones_reported(session_logs):
    rows = session_logs[:]
    logged = read_logs(rows, num_items=20)
    done = rows["next", "done"].squeeze(-1)
    # The logging window marks the sessions it cuts truncated (done) at each stream's end:
    # those whose last logged step is not the user leaving are incomplete.
    cut = ~rows["next", "terminated"].squeeze(-1)[:, -1]
    assert cut.any() and bool(done[:, -1].all())
    complete_ends = done.clone()
    complete_ends[:, -1] &= ~cut
    # Every complete session ends with done, and only there.
    last = logged.mask.sum(1) - 1
    ends = logged.rows["next", "done"].squeeze(-1)
    assert ends[torch.arange(logged.num_sessions), last].all()
    assert int((ends & logged.mask).sum()) == logged.num_sessions == int(complete_ends.sum())
    assert logged.dropped_sessions == int(cut.sum())
    assert bool((logged.propensity[~logged.mask] == 1).all())
    assert int(logged.mask.sum()) == 1600 - sum(
        int(len(row) - (row.nonzero().max() + 1 if row.any() else 0)) for row in complete_ends
    )
    # With the env's cap known, a session the window cut exactly at the cap is complete.
    steps = rows["step_count"].squeeze(-1)[:, -1]
    cap = int(steps[cut].max()) + 1
    capped = read_logs(rows, num_items=20, session_cap=cap)
    at_cap = int((cut & (steps + 1 == cap)).sum())
    assert at_cap and capped.dropped_sessions == int(cut.sum()) - at_cap
    assert capped.num_sessions == logged.num_sessions + at_cap


def test_session_estimators_run_and_pdis_matches_its_definition(session_logs):
    torch.manual_seed(2)
    actor = make_actor(PolicySpecs(obs_dim=session_logs[:]["observation"].shape[-1], num_items=20))
    with pytest.warns(UserWarning, match="session\\(s\\) the log stream stopped before their end"):
        out = off_policy_evaluate(actor, session_logs, num_bootstrap=100)
    assert list(out) == list(SESSION_ESTIMATORS)
    for e in out.values():
        assert math.isfinite(e.value) and e.low <= e.high
    # PDIS by hand: cumulative products of the per-step weights.
    logged = read_logs(session_logs[:], num_items=20)
    with torch.no_grad():
        from torchrl.envs.utils import ExplorationType, set_exploration_type

        with set_exploration_type(ExplorationType.DETERMINISTIC):
            chosen = actor(logged.rows.clone())["action"]
    w = torch.where(logged.mask, (chosen == logged.item).double() / logged.propensity, 1.0)
    expected = (w.cumprod(1) * logged.reward).sum(1).mean().item()
    assert out["pdis"].value == pytest.approx(expected, rel=1e-6)
    assert out["dr"].diagnostics["reward_model_rmse"] < 1.0

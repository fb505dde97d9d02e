"""The estimators and intervals on arrays with known answers (closed forms and a two-action
bandit of known truth).

obp's own estimator classes cannot be imported here (obp is installed without its
dependencies: its package import needs scikit-learn), so the numbers are checked against
closed-form values instead.
"""

import math

import pytest
import torch

from drpo_rl.evaluation.off_policy import estimators as est
from drpo_rl.evaluation.off_policy.intervals import bootstrap_values, interval, standard_error

F64 = torch.float64

# The two-action bandit: the behaviour shows item 1 with probability MU1, item k pays a
# Bernoulli reward of mean MEANS[k]; the target shows item 1 with probability PI1.
MU1, PI1 = 0.3, 0.8
MEANS = (0.2, 0.7)
TRUTH = (1 - PI1) * MEANS[0] + PI1 * MEANS[1]


def two_action_logs(n: int, seed: int):
    """``(w, r, q, v)`` ``[n, 1]`` of the two-action bandit; q, v from a wrong constant model."""
    g = torch.Generator().manual_seed(seed)
    item = (torch.rand(n, generator=g) < MU1).long()
    reward = (torch.rand(n, generator=g) < torch.tensor(MEANS)[item]).to(F64)
    pi = torch.where(item == 1, PI1, 1 - PI1).to(F64)
    mu = torch.where(item == 1, MU1, 1 - MU1).to(F64)
    model = torch.tensor([0.5, 0.5], dtype=F64)  # deliberately wrong: DR stays unbiased
    q = model[item]
    v = torch.full((n,), (1 - PI1) * 0.5 + PI1 * 0.5, dtype=F64)
    return (pi / mu)[:, None], reward[:, None], q[:, None], v[:, None]


def col(*values):
    return torch.tensor(values, dtype=F64)[:, None]


def test_ips_snips_closed_form():
    w, r = col(2.0, 0.5, 0.0, 1.5), col(1.0, 1.0, 0.0, 0.0)
    assert est.ips(w, r).value() == pytest.approx((2.0 + 0.5) / 4)
    assert est.snips(w, r).value() == pytest.approx((2.0 + 0.5) / 4.0)
    w = col(3.0, 1.0, 0.0, 0.0)
    assert est.snips(w, col(1.0, 0.0, 1.0, 1.0)).value() == pytest.approx(3.0 / 4.0)
    assert est.ips(w, col(1.0, 0.0, 1.0, 1.0)).value() == pytest.approx(3.0 / 4.0)


def test_snips_equals_ips_when_weights_average_one():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(500, 1, generator=g, dtype=F64) * 3
    w = w / w.mean()
    r = torch.rand(500, 1, generator=g, dtype=F64)
    assert est.snips(w, r).value() == pytest.approx(est.ips(w, r).value(), rel=1e-12)
    # Not in general: scaled weights move IPS, not SNIPS.
    assert est.ips(2 * w, r).value() == pytest.approx(2 * est.ips(w, r).value())
    assert est.snips(2 * w, r).value() == pytest.approx(est.snips(w, r).value())


def test_dr_is_dm_at_zero_weights_and_ips_at_zero_model():
    g = torch.Generator().manual_seed(1)
    w = torch.rand(300, 1, generator=g, dtype=F64) * 4
    r, q, v = (torch.rand(300, 1, generator=g, dtype=F64) for _ in range(3))
    zero = torch.zeros_like(w)
    assert est.dr(zero, r, q, v).value() == pytest.approx(est.dm(v).value(), rel=1e-12)
    assert est.dr(w, r, zero, zero).value() == pytest.approx(est.ips(w, r).value(), rel=1e-12)
    assert est.sndr(w, r, zero, zero).value() == pytest.approx(est.snips(w, r).value(), rel=1e-12)
    # Switch-DR: DR with an infinite threshold, DM with a threshold below every weight.
    assert est.switch_dr(w, r, q, v, math.inf).value() == pytest.approx(est.dr(w, r, q, v).value())
    assert est.switch_dr(w, r, q, v, 0.0).value() == pytest.approx(est.dm(v).value())
    # Clipped IPS: IPS when nothing is clipped; each clipped weight becomes the clip.
    assert est.clipped_ips(w, r, math.inf).value() == pytest.approx(est.ips(w, r).value())
    clipped = est.clipped_ips(w, r, 1.0)
    assert clipped.value() == pytest.approx((w.clamp(max=1.0) * r).mean().item())
    assert torch.equal(clipped.clipped, w[:, 0] > 1.0)


def test_session_estimators_reduce_to_horizon_one():
    w, r, q, v = two_action_logs(400, seed=3)
    mask = torch.ones_like(w, dtype=torch.bool)
    assert est.pdis(w, r).value() == pytest.approx(est.ips(w, r).value(), rel=1e-12)
    assert est.wpdis(w, r).value() == pytest.approx(est.snips(w, r).value(), rel=1e-12)
    assert est.session_dr(w, r, q, v, mask).value() == pytest.approx(
        est.dr(w, r, q, v).value(), rel=1e-12
    )


def test_pdis_wpdis_two_step_closed_form():
    # Two sessions of two steps; the second session's second step is padding (w 1, r 0).
    w = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    r = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=F64)
    # PDIS: step 0: (2*1 + 0.5*1)/2; step 1: (2*0.5*1 + 0.5*1*0)/2, discounted by 0.9.
    assert est.pdis(w, r, gamma=0.9).value() == pytest.approx(1.25 + 0.9 * 0.5)
    # WPDIS: step 0: 2.5 / 2.5; step 1: 1.0 / (1.0 + 0.5).
    assert est.wpdis(w, r, gamma=1.0).value() == pytest.approx(1.0 + 1.0 / 1.5)
    # Per-decision DR with Q = V = 0 is PDIS; with every weight 0 it is V at the first step.
    mask = torch.tensor([[True, True], [True, False]])
    zero = torch.zeros_like(w)
    assert est.session_dr(w, r, zero, zero, mask).value() == pytest.approx(est.pdis(w, r).value())
    v = torch.tensor([[0.7, 0.4], [0.3, 0.0]], dtype=F64)
    assert est.session_dr(zero, r, zero, v, mask).value() == pytest.approx((0.7 + 0.3) / 2)


def test_horizon_one_estimator_refuses_sessions():
    with pytest.raises(ValueError, match="horizon-1 estimator got sessions of 3 steps"):
        est.ips(torch.ones(4, 3, dtype=F64), torch.ones(4, 3, dtype=F64))


@pytest.mark.parametrize("name", ["ips", "dr", "pdis"])
def test_unbiased_estimators_recover_the_two_action_truth(name):
    """Over 200 seeds the mean estimate is within 3 standard errors of the truth (a
    1-standard-error band misses a third of the time by design)."""
    values = []
    for seed in range(200):
        w, r, q, v = two_action_logs(200, seed)
        if name == "ips":
            terms = est.ips(w, r)
        elif name == "dr":
            terms = est.dr(w, r, q, v)
        else:
            terms = est.pdis(w, r)
        values.append(terms.value())
    values = torch.tensor(values, dtype=F64)
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - TRUTH) <= 3 * se
    assert se < 0.01  # the check has power: a bias of 0.03 would fail it


def test_t_interval_of_a_mean_is_the_textbook_one():
    from scipy.stats import t as student_t

    c = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.6, 0.2], dtype=F64)
    low, high, se = interval(est.Terms(c=c), "t", alpha=0.1)
    expected_se = c.std().item() / math.sqrt(6)
    half = student_t.ppf(0.95, 5) * expected_se
    assert se == pytest.approx(expected_se)
    assert (low, high) == pytest.approx((c.mean().item() - half, c.mean().item() + half))


def test_delta_method_matches_bootstrap_spread_for_snips():
    w, r, _, _ = two_action_logs(2000, seed=5)
    terms = est.snips(w, r)
    boot = bootstrap_values(terms, num_bootstrap=2000, seed=0)
    assert boot.std().item() == pytest.approx(standard_error(terms), rel=0.1)


def test_bootstrap_is_reproducible_under_its_seed():
    w, r, _, _ = two_action_logs(300, seed=6)
    terms = est.ips(w, r)
    first = interval(terms, "bootstrap", num_bootstrap=200, seed=11)
    assert interval(terms, "bootstrap", num_bootstrap=200, seed=11) == first
    assert interval(terms, "bootstrap", num_bootstrap=200, seed=12) != first
    low, high, _ = first
    assert low < terms.value() < high


def _coverage(kind: str, reps: int, n: int) -> float:
    covered = 0
    for seed in range(reps):
        w, r, q, v = two_action_logs(n, seed=10_000 + seed)
        low, high, _ = interval(est.dr(w, r, q, v), kind, num_bootstrap=200, seed=seed)
        covered += low <= TRUTH <= high
    return covered / reps


@pytest.mark.parametrize("kind", ["t", "bootstrap"])
def test_interval_coverage_near_nominal(kind):
    # 100 repetitions: the share covered has a standard deviation of about 0.02 at 0.95.
    assert 0.88 <= _coverage(kind, reps=100, n=300) <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["t", "bootstrap"])
def test_interval_coverage_near_nominal_large(kind):
    assert 0.93 <= _coverage(kind, reps=1000, n=500) <= 0.97

"""The DRO linear program, its CVaR dual, and DRPO's hard top-fraction filter."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from drpo_rl.objectives import cvar_threshold, optimistic_dro_weights, top_fraction_mask


def lp_solution(scores: np.ndarray, kappa: float):
    """max_w mean(w r) s.t. 0 <= w <= 1/kappa, mean(w) = 1, solved by HiGHS."""
    n = len(scores)
    res = linprog(
        c=-scores / n,
        A_eq=np.ones((1, n)) / n,
        b_eq=[1.0],
        bounds=[(0.0, 1.0 / kappa)] * n,
        method="highs",
    )
    assert res.status == 0, res.message
    return res.x, -res.fun


def cvar_objective(scores: np.ndarray, nu: float, kappa: float) -> float:
    return nu + np.maximum(scores - nu, 0.0).mean() / kappa


CASES = [
    (n, kappa, seed)
    for seed, (n, kappa) in enumerate(
        [
            (1, 0.5),
            (2, 0.5),
            (7, 0.3),
            (10, 0.3),
            (10, 0.7),
            (25, 0.05),
            (40, 1.0),
            (64, 0.37),
            (100, 0.2),
        ]
    )
]


@pytest.mark.parametrize(("n", "kappa", "seed"), CASES)
def test_weights_equal_linprog_optimum(n, kappa, seed):
    scores = np.random.default_rng(seed).normal(size=n)
    w_lp, value_lp = lp_solution(scores, kappa)
    w = optimistic_dro_weights(torch.tensor(scores, dtype=torch.float64), kappa).numpy()
    assert w.shape == (n,)
    assert np.all(w >= 0) and np.all(w <= 1 / kappa + 1e-12)
    assert math.isclose(w.mean(), 1.0, rel_tol=1e-12)
    assert math.isclose(float((w * scores).mean()), value_lp, rel_tol=1e-9, abs_tol=1e-9)
    # Distinct scores: the LP optimum is unique, so the weights themselves match.
    np.testing.assert_allclose(w, w_lp, atol=1e-7)


def test_weights_have_one_fractional_boundary_sample():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7], dtype=torch.float64)
    w = optimistic_dro_weights(scores, 0.3)  # kappa N = 1.5: one full slot, half a slot
    torch.testing.assert_close(
        w, torch.tensor([0, 1 / 0.3, 0, 0, 5 - 1 / 0.3], dtype=torch.float64)
    )
    full = (w - 1 / 0.3).abs() < 1e-12
    fractional = (w > 0) & ~full
    assert full.sum() == math.floor(0.3 * 5) and fractional.sum() == 1


def test_weights_batched_over_leading_dims_and_ties():
    scores = torch.randn(3, 4, 9, generator=torch.Generator().manual_seed(0))
    w = optimistic_dro_weights(scores, 0.4)
    assert w.shape == scores.shape and w.dtype == scores.dtype
    torch.testing.assert_close(w.mean(-1), torch.ones(3, 4))
    for idx in np.ndindex(3, 4):
        torch.testing.assert_close(w[idx], optimistic_dro_weights(scores[idx], 0.4))
    tied = torch.ones(6)
    w_tied = optimistic_dro_weights(tied, 0.5)
    torch.testing.assert_close(w_tied, torch.tensor([2.0, 2, 2, 0, 0, 0]))


@pytest.mark.parametrize(("n", "kappa", "seed"), CASES)
def test_cvar_threshold_minimises_dual_and_matches_lp_value(n, kappa, seed):
    scores = np.random.default_rng(100 + seed).normal(size=n)
    nu = float(cvar_threshold(torch.tensor(scores, dtype=torch.float64), kappa))
    f_nu = cvar_objective(scores, nu, kappa)
    # Piecewise linear and convex: its minimum is at a breakpoint (a score) ...
    f_breakpoints = min(cvar_objective(scores, s, kappa) for s in scores)
    assert f_nu <= f_breakpoints + 1e-12
    # ... and no point of a fine grid does better.
    grid = np.linspace(scores.min() - 1, scores.max() + 1, 4001)
    assert f_nu <= min(cvar_objective(scores, g, kappa) for g in grid) + 1e-12
    # Strong duality with the LP.
    _, value_lp = lp_solution(scores, kappa)
    assert math.isclose(f_nu, value_lp, rel_tol=1e-9, abs_tol=1e-9)


def test_cvar_threshold_batched_and_float32():
    scores = torch.randn(5, 11, generator=torch.Generator().manual_seed(3))
    nu = cvar_threshold(scores, 0.25)
    assert nu.shape == (5,) and nu.dtype == torch.float32
    expected = torch.sort(scores, -1, descending=True).values[:, math.ceil(0.25 * 11) - 1]
    torch.testing.assert_close(nu, expected)


@pytest.mark.parametrize("fn", [optimistic_dro_weights, cvar_threshold])
def test_validation_errors(fn):
    with pytest.raises(ValueError, match=r"^kappa: expected a number in \(0, 1\], got 0.0$"):
        fn(torch.randn(4), 0.0)
    with pytest.raises(ValueError, match=r"^kappa: expected a number in \(0, 1\], got 1.5$"):
        fn(torch.randn(4), 1.5)
    with pytest.raises(ValueError, match="float tensor"):
        fn(torch.arange(4), 0.5)
    with pytest.raises(ValueError, match="N >= 1"):
        fn(torch.randn(3, 0), 0.5)


@pytest.mark.parametrize(("n", "kappa"), [(1, 0.5), (10, 0.7), (10, 0.3), (320, 0.5), (33, 0.05)])
def test_top_fraction_keeps_exactly_k(n, kappa):
    scores = torch.randn(n, generator=torch.Generator().manual_seed(n))
    kept, nu = top_fraction_mask(scores, torch.tensor(kappa))
    k = max(1, math.floor(kappa * n + 1e-9))
    assert kept.sum() == k
    top = torch.topk(scores, k).indices
    assert kept[top].all()
    torch.testing.assert_close(nu, torch.full((n,), float(scores[top].min())))


def test_top_fraction_ties_keep_exactly_k_in_position_order():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])
    kept, nu = top_fraction_mask(scores, 0.4)
    assert kept.tolist() == [False, True, True, False, False]
    assert (nu == 2.0).all()


def test_top_fraction_by_group_matches_a_loop_over_groups():
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(200, generator=g)
    groups = torch.randint(0, 13, (200,), generator=g) * 3 - 5  # arbitrary, not contiguous
    kappa = 0.3
    kept, nu = top_fraction_mask(scores, kappa, groups)
    for gid in groups.unique():
        members = (groups == gid).nonzero().squeeze(-1)
        k = max(1, math.floor(kappa * len(members) + 1e-9))
        top = members[torch.topk(scores[members], k).indices]
        assert kept[members].sum() == k
        assert kept[top].all()
        assert (nu[members] == scores[top].min()).all()


def test_top_fraction_validation():
    with pytest.raises(ValueError, match=r"shape \[N\]"):
        top_fraction_mask(torch.randn(2, 3), 0.5)
    with pytest.raises(ValueError, match="integer ids"):
        top_fraction_mask(torch.randn(4), 0.5, groups=torch.zeros(4))
    with pytest.raises(ValueError, match="integer ids"):
        top_fraction_mask(torch.randn(4), 0.5, groups=torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("with_groups", [False, True])
def test_top_fraction_mask_on_valid_samples_equals_the_valid_samples_alone(with_groups):
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(20, generator=g)
    groups = torch.randint(4, (20,), generator=g) if with_groups else None
    valid = torch.rand(20, generator=g) < 0.6
    valid[0] = False  # an invalid sample with the largest score is never kept
    scores[0] = 10.0
    kept, threshold = top_fraction_mask(scores, 0.3, groups, valid)
    alone, alone_threshold = top_fraction_mask(
        scores[valid], 0.3, None if groups is None else groups[valid]
    )
    assert not kept[~valid].any()
    assert torch.equal(kept[valid], alone)
    assert torch.equal(threshold[valid], alone_threshold)


def test_top_fraction_mask_rejects_a_mask_that_is_not_bool():
    with pytest.raises(ValueError, match="bool mask"):
        top_fraction_mask(torch.rand(4), 0.5, valid=torch.ones(4))

"""envs.dynamics' reward rule: one formula, an in-place path for the env's [B, N] matrix and a
differentiable per-pair path for the fit, which must agree."""

import math

import pytest
import torch

from envs import dynamics


def unit(*shape, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen, dtype=dtype), dim=-1)


@pytest.mark.parametrize("delta", [0.5, 0.37, 2.0])
def test_env_matrix_in_place_is_bitwise_the_differentiable_rule(delta):
    items, users = unit(30, 8, seed=1), unit(64, 8)
    expected = dynamics.affinity_of_cosine(users @ items.T, delta)  # out of place
    assert torch.equal(dynamics.affinity(items, users, delta), expected)
    buffer = users @ items.T
    assert dynamics.affinity_of_cosine(buffer, delta, out=buffer).data_ptr() == buffer.data_ptr()


def test_rule_values_against_the_paper_formula():
    cosine = torch.tensor([1.0, 0.5, 0.0, -1.0, 1.0 + 3e-7])
    delta = 0.4
    expected = [math.exp(-(1 - c) / (2 * delta**2)) for c in [1.0, 0.5, 0.0, -1.0]] + [1.0]
    torch.testing.assert_close(
        dynamics.affinity_of_cosine(cosine, delta), torch.tensor(expected), rtol=1e-6, atol=0
    )


def test_pair_rule_is_the_matrix_rule_on_matched_pairs():
    items, users = unit(40, 6, seed=2), unit(7, 6, seed=3)
    matrix = dynamics.affinity(items, users, 0.45)  # [7, 40]
    user_index = torch.arange(7).repeat_interleave(40)
    item_index = torch.arange(40).repeat(7)
    pairs = dynamics.pair_affinity(items[item_index], users[user_index], 0.45)
    torch.testing.assert_close(pairs.view(7, 40), matrix, rtol=1e-6, atol=1e-7)


def test_pair_rule_is_differentiable_in_vectors_and_delta():
    items, users = unit(5, 3, seed=4, dtype=torch.float64), unit(5, 3, seed=5, dtype=torch.float64)
    items.requires_grad_(True)
    users.requires_grad_(True)
    delta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dynamics.pair_affinity, (items, users, delta))
    # d/d delta of exp((c - 1) / (2 delta^2)) = value * (1 - c) / delta^3
    value = dynamics.pair_affinity(items, users, delta)
    (grad,) = torch.autograd.grad(value.sum(), delta)
    c = (items * users).sum(-1)
    torch.testing.assert_close(grad, (value * (1 - c) / delta**3).sum())

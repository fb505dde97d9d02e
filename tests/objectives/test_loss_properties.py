"""The generic properties every loss of the suite has, as TorchRL's own objective tests check.

One parametrised module over every weighted log-likelihood loss (DRPO and its variants,
DRPO-Q, APG, AWR, CRR, AsymRe, with and without a value network or critic) and both actors
(Gaussian over item embeddings, categorical over item ids): unknown ``set_keys`` raise,
reductions ``none``/``mean``/``sum``, the input is left untouched, gradients reach exactly
the right parameters, keyword call == tensordict call, ``state_dict`` round trip, validity
masks (a masked batch gives the outputs and gradients of its valid rows alone), a pure
forward, and ``torch.compile(fullgraph=True)`` equal to eager. A new loss class exported
by ``drpo_rl.objectives`` fails :func:`test_every_loss_class_has_a_case` until it has a case
in ``CASES``, and then gets every property for free.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

import drpo_rl.objectives as objectives
from drpo_rl.algorithms import build, list_algorithms
from drpo_rl.models import (
    PolicySpecs,
    make_categorical_actor,
    make_gaussian_actor,
    make_qvalue_critic,
    make_value_critic,
)
from drpo_rl.objectives import (
    APGLoss,
    AsymReLoss,
    AWRLoss,
    CRRLoss,
    DRPOLoss,
    WeightedLogLikelihoodLoss,
)

OBS, ACT, ITEMS, N = 5, 3, 7, 16
SPECS = {
    "gaussian": PolicySpecs(obs_dim=OBS, action_dim=ACT),
    "categorical": PolicySpecs(obs_dim=OBS, num_items=ITEMS),
}


def actor_of(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "gaussian":
        return make_gaussian_actor(SPECS[kind], num_cells=8, depth=1)
    return make_categorical_actor(SPECS[kind], num_cells=8, depth=1)


def value_of(kind: str):
    return make_value_critic(SPECS[kind], num_cells=8, depth=1)


def critic_of(kind: str):
    """A score network writing ``[*B, 1]``: ``Q(s, a)`` for embeddings, ``f(s)`` for ids."""
    if kind == "gaussian":
        return make_qvalue_critic(SPECS[kind], num_cells=8, depth=1)
    return TensorDictModule(
        nn.Linear(OBS, 1), in_keys=["observation"], out_keys=["state_action_value"]
    )


@dataclass(frozen=True)
class Case:
    """A loss built on an actor kind; ``group`` sets DRPO's group key."""

    cls: type
    make: Callable[[str, int], WeightedLogLikelihoodLoss]
    group: bool = False


def _case(cls, value=False, critic=False, group=False, **kwargs) -> Case:
    def make(kind: str, seed: int = 0):
        actor = actor_of(kind, seed)
        extra = {}
        if critic:
            extra["critic_network"] = critic_of(kind)
        if value:
            loss = cls(actor, value_of(kind), **extra, **kwargs)
        else:
            loss = cls(actor, **extra, **kwargs)
        if group:
            loss.set_keys(group="user_id")
        return loss

    return Case(cls, make, group)


CASES = {
    "drpo": _case(DRPOLoss),
    "drpo-exp": _case(DRPOLoss, weighting="exp"),
    "adapt-bc": _case(DRPOLoss, weighting="uniform"),
    "drpo-groups": _case(DRPOLoss, group=True),
    "drpo-q": _case(DRPOLoss, critic=True),
    "apg": _case(APGLoss, value=True),
    "apg-mean": _case(APGLoss),
    "awr": _case(AWRLoss, value=True),
    "crr": _case(CRRLoss, value=True),
    "crr-binary": _case(CRRLoss, value=True, form="binary"),
    "crr-critic": _case(CRRLoss, value=True, critic=True),
    "asymre": _case(AsymReLoss, value=True),
}
KINDS = ("gaussian", "categorical")
PARAMS = [pytest.param(name, kind, id=f"{name}-{kind}") for name in CASES for kind in KINDS]


def make_batch(kind: str, n: int = N, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        action = torch.randn(n, ACT, generator=g)
    else:
        action = torch.randint(ITEMS, (n,), generator=g)
    return TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=g),
            "action": action,
            ("next", "reward"): torch.rand(n, 1, generator=g),
            "user_id": torch.randint(3, (n,), generator=g),
        },
        [n],
    )


def loss_terms(loss) -> list[str]:
    return [key for key in loss.out_keys if key.startswith("loss_")]


def grads(loss, out, term) -> dict[str, torch.Tensor | None]:
    loss.zero_grad(set_to_none=True)
    out[term].backward(retain_graph=True)
    return {name: p.grad for name, p in loss.named_parameters()}


def assert_outputs_equal(a, b, keys, **tol):
    for key in keys:
        torch.testing.assert_close(a[key], b[key], msg=lambda m, key=key: f"{key}: {m}", **tol)


def test_every_loss_class_has_a_case():
    exported = {
        obj
        for obj in vars(objectives).values()
        if inspect.isclass(obj)
        and issubclass(obj, WeightedLogLikelihoodLoss)
        and not inspect.isabstract(obj)
    }
    assert exported == {case.cls for case in CASES.values()}


@pytest.mark.parametrize("name", list_algorithms())
def test_every_registry_loss_of_the_family_has_a_case(name):
    if name == "ppo":  # online, TorchRL's ClipPPOLoss
        return
    algo = build(name, SPECS["gaussian"], num_cells=8, depth=1)
    covered = {case.cls for case in CASES.values()}
    for module in algo.loss_modules.values():
        if isinstance(module, WeightedLogLikelihoodLoss):
            assert type(module) in covered


@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_unknown_set_keys_raise(name, kind):
    loss = CASES[name].make(kind)
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(not_a_key="x")


@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_reductions_none_mean_sum(name, kind):
    data = make_batch(kind)
    outs = {}
    for reduction in ("none", "mean", "sum"):
        loss = CASES[name].make(kind)
        loss.reduction = reduction
        outs[reduction] = loss(data)
    for term in loss_terms(loss):
        per_sample = outs["none"][term]
        assert per_sample.shape == (N,)
        torch.testing.assert_close(outs["mean"][term], per_sample.mean())
        torch.testing.assert_close(outs["sum"][term], per_sample.sum())


@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_input_untouched_and_kwargs_call_equals_tensordict_call(name, kind):
    loss = CASES[name].make(kind)
    data = make_batch(kind)
    before = data.clone()
    out = loss(data)
    assert set(data.keys(True, True)) == set(before.keys(True, True))
    assert (data == before).all()
    kwargs = {(key if isinstance(key, str) else "_".join(key)): data[key] for key in loss.in_keys}
    from_kwargs = loss(**kwargs)
    assert len(from_kwargs) == len(loss.out_keys)
    for key, value in zip(loss.out_keys, from_kwargs, strict=True):
        torch.testing.assert_close(value, out[key])


@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_gradients_reach_exactly_the_right_parameters(name, kind):
    loss = CASES[name].make(kind)
    out = loss(make_batch(kind))
    owners = {"loss_objective": "actor_network_params.", "loss_value": "value_network_params."}
    for term in loss_terms(loss):
        for param, grad in grads(loss, out, term).items():
            reached = grad is not None and bool(grad.abs().sum() > 0)
            # Every parameter of the term's network is reached, no other one: the critic's
            # (DRPO-Q, CRR with a critic) are in loss.parameters() but reached by no term.
            assert reached == param.startswith(owners[term]), (term, param)


def test_critic_parameters_are_listed_but_left_alone_by_an_optimiser():
    loss = CASES["drpo-q"].make("gaussian")
    critic = {n: p for n, p in loss.named_parameters() if n.startswith("critic_network_params")}
    assert critic  # documented: listed in loss.parameters() ...
    before = {n: p.detach().clone() for n, p in critic.items()}
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.1)
    loss(make_batch("gaussian"))["loss_objective"].backward()
    optimizer.step()
    for n, p in critic.items():  # ... but no term reaches them: Adam skips them
        assert p.grad is None and torch.equal(p, before[n])


@pytest.mark.parametrize("separate_losses", [True, False])
def test_separate_losses_with_a_trunk_shared_by_actor_and_value(separate_losses):
    from tensordict.nn import NormalParamExtractor
    from torchrl.modules import IndependentNormal, ProbabilisticActor

    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(OBS, 8), nn.Tanh())
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(trunk, nn.Linear(8, 2 * ACT), NormalParamExtractor()),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        distribution_class=IndependentNormal,
    )
    value = TensorDictModule(
        nn.Sequential(trunk, nn.Linear(8, 1)), in_keys=["observation"], out_keys=["state_value"]
    )
    loss = AWRLoss(actor, value, separate_losses=separate_losses)
    trunk_weight = trunk[0].weight
    out = loss(make_batch("gaussian"))
    loss.zero_grad(set_to_none=True)
    trunk_weight.grad = None
    out["loss_value"].backward(retain_graph=True)
    value_head = [p for n, p in loss.named_parameters() if n.startswith("value_network_params")]
    assert value_head and all(p.grad is not None for p in value_head)
    assert (trunk_weight.grad is not None) == (not separate_losses)
    # The shared trunk is trained by the objective either way.
    trunk_weight.grad = None
    out["loss_objective"].backward()
    assert trunk_weight.grad is not None and trunk_weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_state_dict_round_trip(name, kind):
    loss = CASES[name].make(kind, 0)
    if isinstance(loss, DRPOLoss):
        loss.kappa = 0.3
    other = CASES[name].make(kind, 7)
    data = make_batch(kind)
    assert not torch.equal(loss(data)["loss_objective"], other(data)["loss_objective"])
    other.load_state_dict(loss.state_dict())
    assert_outputs_equal(loss(data), other(data), loss.out_keys)


MASK_KEYS = [("collector", "mask"), "shifted_valid"]


@pytest.mark.parametrize("mask_key", MASK_KEYS, ids=["collector-mask", "shifted-valid"])
@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_masked_batch_equals_the_batch_of_its_valid_rows(name, kind, mask_key):
    data = make_batch(kind, seed=3)
    valid = torch.zeros(N, dtype=torch.bool)
    valid[torch.randperm(N, generator=torch.Generator().manual_seed(1))[: N // 2]] = True
    masked = data.clone()
    masked[mask_key] = valid.unsqueeze(-1) if mask_key == ("collector", "mask") else valid
    # A masked row may hold anything, a non-finite reward included.
    masked["next", "reward"] = torch.where(valid.unsqueeze(-1), data["next", "reward"], torch.nan)
    loss = CASES[name].make(kind)
    out, ref = loss(masked), loss(data[valid])
    assert_outputs_equal(out, ref, loss.out_keys)
    assert all(torch.isfinite(out[key]).all() for key in loss.out_keys)
    for term in loss_terms(loss):
        got, want = grads(loss, out, term), grads(loss, ref, term)
        for param in got:
            if want[param] is None:
                assert got[param] is None
            else:
                torch.testing.assert_close(got[param], want[param])
    weights = loss.weights(masked)
    assert (weights[~valid] == 0).all()
    torch.testing.assert_close(weights[valid], loss.weights(data[valid]))
    # reduction "none" keeps the batch shape: 0 on masked rows, the valid rows' losses else.
    loss.reduction = "none"
    per_sample, ref_per_sample = loss(masked), loss(data[valid])
    for term in loss_terms(loss):
        assert per_sample[term].shape == (N,)
        assert (per_sample[term][~valid] == 0).all()
        torch.testing.assert_close(per_sample[term][valid], ref_per_sample[term])


def test_loss_mask_key_none_uses_every_row():
    data = make_batch("gaussian")
    masked = data.clone()
    masked["collector", "mask"] = torch.arange(N).unsqueeze(-1) % 2 == 0
    loss = CASES["drpo"].make("gaussian")
    loss.loss_mask_key = None
    assert_outputs_equal(loss(masked), loss(data), loss.out_keys)


@pytest.mark.parametrize(("name", "kind"), PARAMS)
def test_forward_is_pure(name, kind):
    loss = CASES[name].make(kind)
    loss.train()
    data = make_batch(kind)
    state = {key: value.clone() for key, value in loss.state_dict().items()}
    first = loss(data)
    first["loss_objective"].backward()
    second = loss(data)
    assert_outputs_equal(first, second, loss.out_keys, rtol=0, atol=0)
    for key, value in loss.state_dict().items():
        assert torch.equal(value, state[key]), key


# Tracing costs seconds per case: every loss is compiled with the Gaussian actor in the
# default run, with the categorical one under -m slow.
COMPILE_PARAMS = [
    pytest.param(name, kind, id=f"{name}-{kind}", marks=[pytest.mark.slow] * (kind != "gaussian"))
    for name in CASES
    for kind in KINDS
]


@pytest.mark.parametrize(("name", "kind"), COMPILE_PARAMS)
def test_compiles_fullgraph_and_equals_eager(name, kind):
    # aot_eager traces the backward as well as the forward.
    backend = "aot_eager"
    torch._dynamo.reset()
    loss = CASES[name].make(kind)
    data = make_batch(kind)
    compiled = torch.compile(loss, fullgraph=True, backend=backend)
    out, ref = compiled(data), loss(data)
    assert_outputs_equal(out, ref, loss.out_keys, rtol=1e-6, atol=1e-6)
    for term in loss_terms(loss):
        got, want = grads(loss, out, term), grads(loss, ref, term)
        for param, grad in want.items():
            # A compiled backward may give zeros where eager leaves None.
            zeros = torch.zeros_like(loss.get_parameter(param))
            torch.testing.assert_close(
                zeros if got[param] is None else got[param],
                zeros if grad is None else grad,
                rtol=1e-6,
                atol=1e-6,
            )

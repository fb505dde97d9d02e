"""Policies as TorchRL ``ProbabilisticActor``: Gaussian over item embeddings, categorical over ids.

Both read ``"observation"`` and write ``"action"`` (plus ``"action_log_prob"`` when built with
``return_log_prob=True``). Under ``set_exploration_type(ExplorationType.DETERMINISTIC)``
(which TorchRL losses use in ``forward``, and evaluation uses) the Gaussian actor returns its
mean and the categorical actor its arg-max item.
"""

from __future__ import annotations

from typing import Literal

import torch
from tensordict.nn import InteractionType, TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor

from drpo_rl.models.networks import BoundedNormalScale, TwoTowerScores, make_mlp
from drpo_rl.models.specs import PolicySpecs
from envs.common.checks import check_choice

__all__ = [
    "categorical_bc_module",
    "make_actor",
    "make_categorical_actor",
    "make_gaussian_actor",
    "make_item_scores",
]


def make_gaussian_actor(
    env_or_specs,
    *,
    num_cells: int = 128,
    depth: int = 2,
    log_std_init: float = 0.0,
    return_log_prob: bool = False,
) -> ProbabilisticActor:
    """Gaussian policy ``N(mu_theta(s), diag(sigma^2))`` over the item-embedding action.

    The mean is an MLP of the observation. The log-std is ONE learned, state-independent
    parameter per action dimension (:class:`~drpo_rl.models.networks.BoundedNormalScale`:
    exp mapping, floor 1e-4, soft ceiling ``exp(20)`` so that a runaway sigma stays
    finite): this is the paper's ``pi = N(mu(s), sigma^2 I)``, and it makes
    ``sigma`` a single trajectory to watch for the curse of repulsion (it shrinks under
    attractive updates and the ``1/sigma^2`` factor then magnifies repulsive ones). No tanh
    squashing: embeddings are unbounded and the env decodes by cosine similarity.

    Args:
        env_or_specs: a TorchRL env with an embedding action, or a :class:`PolicySpecs`.

    Keyword Args:
        num_cells (int): hidden units per layer (paper: 128).
        depth (int): hidden layers (paper: 2 or 3).
        log_std_init (float): initial ``log sigma``.
        return_log_prob (bool): also write ``"action_log_prob"`` when sampling.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.envs.utils import ExplorationType, set_exploration_type
        >>> actor = make_gaussian_actor(PolicySpecs(obs_dim=16, action_dim=8))
        >>> td = actor(TensorDict(observation=torch.randn(4, 16), batch_size=[4]))
        >>> td["action"].shape, td["loc"].shape, td["scale"].shape
        (torch.Size([4, 8]), torch.Size([4, 8]), torch.Size([4, 8]))
        >>> with set_exploration_type(ExplorationType.DETERMINISTIC):
        ...     td = actor(td)
        >>> torch.equal(td["action"], td["loc"])
        True
    """
    specs = PolicySpecs.of(env_or_specs)
    if specs.discrete:
        raise ValueError(
            f"make_gaussian_actor needs an embedding action; got an item-id action over "
            f"{specs.num_items} items (use make_categorical_actor)"
        )
    net = nn.Sequential(
        make_mlp(specs.obs_dim, specs.action_dim, num_cells=num_cells, depth=depth),
        BoundedNormalScale(specs.action_dim, init_value=log_std_init),
    )
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        out_keys=["action"],
        spec=specs.action_spec,
        distribution_class=IndependentNormal,
        return_log_prob=return_log_prob,
        default_interaction_type=InteractionType.RANDOM,
    )


def make_item_scores(
    env_or_specs,
    *,
    form: Literal["per_item", "two_tower"] = "per_item",
    num_cells: int = 128,
    depth: int = 2,
    learn_item_embeddings: bool = False,
    embedding_dim: int | None = None,
) -> nn.Module:
    """A network from the observation to one score per catalogue item, ``[..., num_items]``.

    ``form="per_item"``: an MLP with a ``num_items``-wide output layer (small catalogues).
    ``form="two_tower"``: :class:`TwoTowerScores` against the specs' item embeddings (fixed
    unless ``learn_item_embeddings``), or a learned table of ``embedding_dim`` when the specs
    carry none (large catalogues). Used as policy logits and as per-item ``Q(s, .)``.

    Examples:
        >>> specs = PolicySpecs(obs_dim=16, num_items=30, item_embeddings=torch.randn(30, 8))
        >>> make_item_scores(specs, form="two_tower")(torch.zeros(2, 16)).shape
        torch.Size([2, 30])
    """
    specs = PolicySpecs.of(env_or_specs)
    if not specs.discrete:
        raise ValueError(
            f"item scores need an item-id action; got an embedding action of dim {specs.action_dim}"
        )
    check_choice("form", form, ("per_item", "two_tower"))
    if form == "per_item":
        return make_mlp(specs.obs_dim, specs.num_items, num_cells=num_cells, depth=depth)
    return TwoTowerScores(
        specs.obs_dim,
        item_embeddings=specs.item_embeddings,
        num_items=specs.num_items,
        embedding_dim=embedding_dim,
        learnable=learn_item_embeddings,
        num_cells=num_cells,
        depth=depth,
    )


def make_categorical_actor(
    env_or_specs,
    *,
    form: Literal["per_item", "two_tower"] = "per_item",
    num_cells: int = 128,
    depth: int = 2,
    learn_item_embeddings: bool = False,
    embedding_dim: int | None = None,
    return_log_prob: bool = False,
) -> ProbabilisticActor:
    """Categorical policy over item ids, logits from :func:`make_item_scores`.

    Writes ``"logits"`` ``[..., num_items]`` and ``"action"`` (int64 item id).

    For TorchRL's ``BCLoss`` give it :func:`categorical_bc_module` of this actor:
    ``BCLoss(actor)`` on integer actions reads the prediction at ``"action"``, which is the
    sampled item id here, and fails inside ``cross_entropy``.

    Examples:
        >>> from tensordict import TensorDict
        >>> actor = make_categorical_actor(PolicySpecs(obs_dim=16, num_items=30))
        >>> td = actor(TensorDict(observation=torch.randn(4, 16), batch_size=[4]))
        >>> td["action"].dtype, td["action"].shape, td["logits"].shape
        (torch.int64, torch.Size([4]), torch.Size([4, 30]))
        >>> actor.get_dist(td).log_prob(td["action"]).shape
        torch.Size([4])
    """
    specs = PolicySpecs.of(env_or_specs)
    scores = make_item_scores(
        specs,
        form=form,
        num_cells=num_cells,
        depth=depth,
        learn_item_embeddings=learn_item_embeddings,
        embedding_dim=embedding_dim,
    )
    module = TensorDictModule(scores, in_keys=["observation"], out_keys=["logits"])
    return ProbabilisticActor(
        module,
        in_keys=["logits"],
        out_keys=["action"],
        spec=specs.action_spec,
        distribution_class=torch.distributions.Categorical,
        return_log_prob=return_log_prob,
        default_interaction_type=InteractionType.RANDOM,
    )


def categorical_bc_module(actor: ProbabilisticActor) -> TensorDictModule:
    """The item-id actor as TorchRL's ``BCLoss`` reads it: its logits network writing its
    scores at ``"action"``, with the actor's own parameters (training one trains the other).

    TorchRL 0.14's ``BCLoss`` takes, for integer (item id) actions, whatever the network
    writes at the action key as the logits of ``cross_entropy``; a
    :class:`~torchrl.modules.ProbabilisticActor` writes its sampled item there instead.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.objectives import BCLoss
        >>> actor = make_categorical_actor(PolicySpecs(obs_dim=4, num_items=5))
        >>> loss = BCLoss(categorical_bc_module(actor))
        >>> logs = TensorDict(observation=torch.randn(8, 4), action=torch.randint(5, (8,)),
        ...                   batch_size=[8])
        >>> loss(logs)["loss_bc"].backward()
        >>> actor.module[0].module[0].weight.grad is not None
        True
    """
    scores = actor.module[0] if isinstance(actor, ProbabilisticActor) else None
    if scores is None or "logits" not in scores.out_keys:
        raise ValueError(
            "actor: expected an item-id actor of make_categorical_actor (a ProbabilisticActor "
            f"whose first module writes 'logits'), got {type(actor).__name__}"
        )
    return TensorDictModule(scores.module, in_keys=scores.in_keys, out_keys=["action"])


def make_actor(env_or_specs, **kwargs) -> ProbabilisticActor:
    """The policy that fits the action form: :func:`make_gaussian_actor` for an embedding
    action, :func:`make_categorical_actor` for item ids (``kwargs`` go to that factory).

    Examples:
        >>> make_actor(PolicySpecs(obs_dim=4, num_items=5)).spec["action"].n
        5
    """
    specs = PolicySpecs.of(env_or_specs)
    if specs.discrete:
        return make_categorical_actor(specs, **kwargs)
    return make_gaussian_actor(specs, **kwargs)

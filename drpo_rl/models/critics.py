"""Critics as TorchRL ``ValueOperator``: ``V(s)`` and ``Q(s, a)`` for both action forms.

Output keys are TorchRL's defaults so that TorchRL losses find them without ``set_keys``:
``"state_value"`` for ``V(s)``; ``"state_action_value"`` for ``Q(s, a)``, which is ``[..., 1]``
for an embedding action (the action is an input) and ``[..., num_items]`` for item ids (one
value per item, as ``DiscreteIQLLoss`` and ``QValueActor`` expect).
"""

from __future__ import annotations

from typing import Literal

from torchrl.modules import ValueOperator

from drpo_rl.models.actors import make_item_scores
from drpo_rl.models.networks import make_mlp
from drpo_rl.models.specs import PolicySpecs

__all__ = ["make_qvalue_critic", "make_value_critic"]


def make_value_critic(env_or_specs, *, num_cells: int = 128, depth: int = 2) -> ValueOperator:
    """``V(s)``: an MLP of ``"observation"`` writing ``"state_value"`` ``[..., 1]``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> critic = make_value_critic(PolicySpecs(obs_dim=16, num_items=30))
        >>> critic(TensorDict(observation=torch.randn(4, 16), batch_size=[4]))["state_value"].shape
        torch.Size([4, 1])
    """
    specs = PolicySpecs.of(env_or_specs)
    return ValueOperator(
        make_mlp(specs.obs_dim, 1, num_cells=num_cells, depth=depth),
        in_keys=["observation"],
        out_keys=["state_value"],
    )


def make_qvalue_critic(
    env_or_specs,
    *,
    num_cells: int = 128,
    depth: int = 2,
    form: Literal["per_item", "two_tower"] = "per_item",
    learn_item_embeddings: bool = False,
    embedding_dim: int | None = None,
) -> ValueOperator:
    """``Q(s, a)`` writing ``"state_action_value"``.

    Embedding action: an MLP of ``(observation, action)`` concatenated, output ``[..., 1]``.
    Item-id action: per-item scores (``form`` as in :func:`make_item_scores`), output
    ``[..., num_items]``; gather the logged item to get ``Q(s, a)``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> q = make_qvalue_critic(PolicySpecs(obs_dim=16, action_dim=8))
        >>> td = TensorDict(observation=torch.randn(4, 16), action=torch.randn(4, 8))
        >>> td.batch_size = [4]
        >>> q(td)["state_action_value"].shape
        torch.Size([4, 1])
        >>> q = make_qvalue_critic(PolicySpecs(obs_dim=16, num_items=30))
        >>> q(td.exclude("action"))["state_action_value"].shape
        torch.Size([4, 30])
    """
    specs = PolicySpecs.of(env_or_specs)
    if specs.discrete:
        scores = make_item_scores(
            specs,
            form=form,
            num_cells=num_cells,
            depth=depth,
            learn_item_embeddings=learn_item_embeddings,
            embedding_dim=embedding_dim,
        )
        return ValueOperator(scores, in_keys=["observation"], out_keys=["state_action_value"])
    return ValueOperator(
        make_mlp(specs.obs_dim + specs.action_dim, 1, num_cells=num_cells, depth=depth),
        in_keys=["observation", "action"],
        out_keys=["state_action_value"],
    )

"""Plain ``nn.Module`` networks shared by the actors and critics (no TensorDict keys here)."""

from __future__ import annotations

import torch
from tensordict.nn import AddStateIndependentNormalScale
from torch import nn
from torch.nn import functional as F
from torchrl.modules import MLP

from envs.common.checks import check_int

__all__ = ["LOG_STD_MAX", "BoundedNormalScale", "TwoTowerScores", "make_mlp"]

#: Soft upper bound of a Gaussian actor's ``log sigma``. ``sigma = exp(20) ~ 5e8`` is far
#: beyond any embedding scale, yet actions drawn at that scale still square to finite
#: float32 values; at ``log sigma = 60`` the losses that sample actions (CQL, PPO) overflow,
#: and ``exp`` itself is ``inf`` from about 89.
LOG_STD_MAX = 20.0


def make_mlp(in_features: int, out_features: int, *, num_cells: int = 128, depth: int = 2) -> MLP:
    """The paper's network: ``depth`` hidden layers of ``num_cells`` units with ReLU.

    Several inputs are concatenated on the last dimension (TorchRL's ``MLP`` does it), which
    is how ``Q(s, a)`` takes ``(observation, action)``.

    Examples:
        >>> net = make_mlp(4, 3, depth=2)
        >>> net(torch.zeros(5, 4)).shape
        torch.Size([5, 3])
        >>> sum(isinstance(m, nn.Linear) for m in net)
        3
    """
    check_int("depth", depth)
    check_int("num_cells", num_cells)
    return MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=[num_cells] * depth,
        activation_class=nn.ReLU,
    )


class TwoTowerScores(nn.Module):
    """Scores of every catalogue item for a state: ``user_tower(s) @ item_embeddings.T``.

    The user tower is an MLP from the observation to the embedding space. The item tower is
    the embedding table itself: the environment's catalogue embeddings (fixed by default, so
    that the scores generalise to every item through the catalogue geometry) or a learnable
    table (``learnable=True``, initialised from the given embeddings or at random when only
    ``num_items``/``embedding_dim`` are given). A large catalogue then costs one matrix
    product instead of an ``[hidden, num_items]`` output layer per network.

    Args:
        obs_dim (int): observation size.

    Keyword Args:
        item_embeddings (torch.Tensor, optional): ``[num_items, d]`` initial/fixed table.
        num_items (int, optional): catalogue size when no table is given.
        embedding_dim (int, optional): ``d`` when no table is given.
        learnable (bool): train the table. Forced to ``True`` when no table is given.
        num_cells (int), depth (int): user tower size.

    Examples:
        >>> emb = torch.randn(50, 8)
        >>> scores = TwoTowerScores(16, item_embeddings=emb)
        >>> scores(torch.zeros(3, 16)).shape
        torch.Size([3, 50])
        >>> "item_embeddings" in dict(scores.named_buffers())  # fixed: a buffer
        True
        >>> TwoTowerScores(16, num_items=50, embedding_dim=8).item_embeddings.requires_grad
        True
    """

    def __init__(
        self,
        obs_dim: int,
        *,
        item_embeddings: torch.Tensor | None = None,
        num_items: int | None = None,
        embedding_dim: int | None = None,
        learnable: bool = False,
        num_cells: int = 128,
        depth: int = 2,
    ) -> None:
        super().__init__()
        if item_embeddings is None:
            if num_items is None or embedding_dim is None:
                raise ValueError(
                    "TwoTowerScores needs item_embeddings, or num_items and embedding_dim to "
                    "learn a table from scratch"
                )
            # Small init keeps the initial logits near uniform.
            table = torch.randn(num_items, embedding_dim) / embedding_dim**0.5
            learnable = True
        else:
            if item_embeddings.ndim != 2:
                raise ValueError(
                    f"item_embeddings must be [num_items, d], got {tuple(item_embeddings.shape)}"
                )
            table = item_embeddings.detach().clone().float()
        if learnable:
            self.item_embeddings = nn.Parameter(table)
        else:
            self.register_buffer("item_embeddings", table)
        self.user_tower = make_mlp(obs_dim, table.shape[1], num_cells=num_cells, depth=depth)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.user_tower(observation) @ self.item_embeddings.T


class BoundedNormalScale(AddStateIndependentNormalScale):
    """One learned, state-independent ``log sigma`` per action dimension, bounded above.

    ``sigma = exp(log_std_max - softplus(log_std_max - p))`` for the parameter ``p``
    (``state_independent_scale``, as in TensorDict's ``AddStateIndependentNormalScale``,
    whose state-dict layout this keeps), floored at ``scale_lb``. Below ``log_std_max - 10``
    this is ``exp(p)`` to float32 precision; above, it saturates smoothly at
    ``exp(log_std_max)`` with a non-zero gradient, so a runaway ``log sigma`` (the curse of
    repulsion) stays finite and can still come back.

    Examples:
        >>> scale = BoundedNormalScale(2, init_value=-1.0)
        >>> loc, sigma = scale(torch.zeros(3, 2))
        >>> torch.allclose(sigma, torch.full((3, 2), -1.0).exp())
        True
        >>> with torch.no_grad():
        ...     _ = scale.state_independent_scale.fill_(1000.0)
        >>> bool(torch.isfinite(scale(torch.zeros(1, 2))[1]).all())
        True
    """

    def __init__(
        self,
        scale_shape: int | tuple[int, ...],
        *,
        init_value: float = 0.0,
        scale_lb: float = 1e-4,
        log_std_max: float = LOG_STD_MAX,
    ) -> None:
        if not init_value < log_std_max:
            raise ValueError(f"init_value must be < log_std_max={log_std_max}, got {init_value}")
        super().__init__(scale_shape, scale_mapping="exp", scale_lb=scale_lb, init_value=init_value)
        self.log_std_max = float(log_std_max)

    def forward(self, loc: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
        log_std = self.log_std_max - F.softplus(self.log_std_max - self.state_independent_scale)
        scale = log_std.exp().clamp_min(self.scale_lb).expand_as(loc)
        return (loc, scale, *others)

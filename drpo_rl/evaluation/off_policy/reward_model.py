"""The direct method's reward model ``r(x, a)`` (and FQE's ``Q(s, a)``): a small MLP, fitted on
the logs with a held-out split.

The model reads the observation and the item: the item's catalogue embedding when the
catalogue is known, else a learned embedding of its id. It is fitted by mean squared error
with Adam on a random ``1 - holdout`` share of the rows; the held-out rows pick the epoch
to keep (early stopping) and give the reported held-out RMSE. A model remembers the
:attr:`~drpo_rl.evaluation.off_policy.logged.LoggedSessions.fingerprint` of the logs it
was fitted on, so that using it on other logs is noticed (warned: a model fitted on other
logs of the same world is legitimate, but rarely what was meant).

Example:
    >>> import torch
    >>> obs = torch.randn(512, 3)
    >>> item = torch.randint(4, (512,))
    >>> reward = (item == 2).double() + 0.5 * obs[:, 0].double()
    >>> model = ItemValueModel(obs_dim=3, num_items=4)
    >>> rmse = fit_item_values(model, obs, item, reward, seed=0)
    >>> rmse < 0.2
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from drpo_rl.models.networks import make_mlp

# A learned item embedding's width when the catalogue's embeddings are unknown.
ITEM_EMBEDDING_DIM = 16
# Fewest mini-batches per epoch of a fit.
MIN_BATCHES = 8


class ItemValueModel(nn.Module):
    """``f(observation, item) -> value``: an MLP of the observation and the item's features.

    Args:
        obs_dim: observation width.
        num_items: catalogue size.
        item_embeddings: the catalogue's ``[N, d]`` embeddings (fixed features), or ``None``
            for a learned embedding of the item id.
        num_cells, depth: the MLP's hidden width and layers.

    Example:
        >>> model = ItemValueModel(obs_dim=3, num_items=5, item_embeddings=torch.eye(5, 4))
        >>> model(torch.zeros(2, 3), torch.tensor([[0, 4, 1], [2, 2, 2]])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        obs_dim: int,
        num_items: int,
        item_embeddings: torch.Tensor | None = None,
        num_cells: int = 64,
        depth: int = 2,
    ) -> None:
        super().__init__()
        self.obs_dim, self.num_items = obs_dim, num_items
        if item_embeddings is None:
            self.items = nn.Embedding(num_items, ITEM_EMBEDDING_DIM)
            width = ITEM_EMBEDDING_DIM
        else:
            self.items = nn.Embedding.from_pretrained(item_embeddings.float(), freeze=True)
            width = item_embeddings.shape[1]
        self.net = make_mlp(obs_dim + width, 1, num_cells=num_cells, depth=depth)
        #: The fingerprint of the logs it was fitted on ("" before fitting).
        self.fitted_on = ""
        self.heldout_rmse = math.nan

    def forward(self, observation: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Values ``item.shape``: ``observation`` ``[R, D]``, ``item`` ``[R]`` or ``[R, K]``."""
        if item.ndim == 2:
            observation = observation.unsqueeze(1).expand(-1, item.shape[1], -1)
        features = torch.cat([observation.float(), self.items(item)], -1)
        return self.net(features).squeeze(-1).to(torch.float64)

    def scores(self, observation: torch.Tensor, item: torch.Tensor, chunk: int = 1 << 15):
        """:meth:`forward` without gradients, in chunks of rows (``item`` ``[R, K]``)."""
        with torch.no_grad():
            step = max(1, chunk // max(1, item.shape[-1]))
            return torch.cat(
                [
                    self(observation[i : i + step], item[i : i + step])
                    for i in range(0, observation.shape[0], step)
                ]
            )


def fit_item_values(
    model: ItemValueModel,
    observation: torch.Tensor,
    item: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    holdout: float = 0.2,
    epochs: int = 30,
    batch_size: int = 512,
    lr: float = 3e-3,
    patience: int = 4,
    fresh: bool = True,
) -> float:
    """Fit ``model`` to ``target`` (``[R]``) by MSE; keep the epoch of least held-out error.

    Returns the held-out RMSE (also kept as ``model.heldout_rmse``). The split and the
    batches come from ``seed``; fewer than 10 rows are all used for fitting (RMSE in-sample).
    ``fresh=False`` continues from the model as it is (FQE's later iterations); a fresh fit
    first sets the output to the mean target. Small logs get smaller batches (at least
    :data:`MIN_BATCHES` per epoch), so that a few hundred rows still get enough steps.
    """
    generator = torch.Generator().manual_seed(seed)
    n = observation.shape[0]
    order = torch.randperm(n, generator=generator).to(observation.device)
    num_val = int(holdout * n) if n >= 10 else 0
    val, train = order[:num_val], order[num_val:]
    if num_val == 0:
        val = train
    target = target.to(torch.float64)
    if fresh:
        # A fresh model starts at the mean target (its output layer's bias), so that a rare
        # reward (clicks: a few in a thousand) is not lost under the initialisation's offset.
        last = [m for m in model.net.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.bias.fill_(target[train].mean().item())
            last.weight.mul_(0.1)
    batch_size = max(1, min(batch_size, len(train) // MIN_BATCHES))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def heldout() -> float:
        with torch.no_grad():
            error = model(observation[val], item[val]) - target[val]
            return error.pow(2).mean().sqrt().item()

    best, best_state, stale = heldout(), _copy(model), 0
    for _ in range(epochs):
        shuffled = train[torch.randperm(len(train), generator=generator).to(train.device)]
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start : start + batch_size]
            loss = (model(observation[batch], item[batch]) - target[batch]).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        error = heldout()
        if error < best - 1e-6:
            best, best_state, stale = error, _copy(model), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    model.heldout_rmse = best
    return best


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}

"""Fitted Q evaluation (FQE): the evaluated policy's ``Q(s, a)`` on the logged sessions.

Iteration ``k`` fits ``Q_k`` (an :class:`~.reward_model.ItemValueModel`, warm-started) to
the one-step targets ``r_t + gamma * V_{k-1}(s_{t+1})``, ``V(s) = E_{a ~ pi} Q(s, a)``, with
TorchRL's TD(0) return (:func:`torchrl.objectives.value.functional.td0_return_estimate`);
the session's end (``done``: the user left, or the horizon ended the session as
``evaluate()`` ends it) stops the bootstrap. ``T`` iterations propagate rewards through
sessions of ``T`` steps; at horizon 1 FQE is the reward model's one fit to ``r``.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from drpo_rl.evaluation.off_policy.logged import read_logs
    >>> from drpo_rl.evaluation.off_policy.target import TargetItems
    >>> _ = torch.manual_seed(0)
    >>> rows = TensorDict({"observation": torch.randn(400, 2), "action": torch.zeros(400).long(),
    ...                    "behavior_log_prob": torch.zeros(400),
    ...                    ("next", "reward"): torch.ones(400, 1)}, [400])
    >>> logged = read_logs(rows, num_items=2)
    >>> target = TargetItems(logged=torch.ones(400), items=torch.zeros(400, 1).long())
    >>> model = ItemValueModel(obs_dim=2, num_items=2)
    >>> q, v = fitted_q(logged, target, model, gamma=1.0, seed=0)
    >>> bool((v - 1).abs().max() < 0.1)
    True
"""

from __future__ import annotations

import torch
from torchrl.objectives.value.functional import td0_return_estimate

from drpo_rl.evaluation.off_policy.logged import LoggedSessions
from drpo_rl.evaluation.off_policy.reward_model import ItemValueModel, fit_item_values
from drpo_rl.evaluation.off_policy.target import TargetItems

# Epochs of the first fit, and of each later (warm-started) FQE iteration.
FIRST_EPOCHS = 30
LATER_EPOCHS = 5


def fitted_q(
    logged: LoggedSessions,
    target: TargetItems,
    model: ItemValueModel,
    *,
    gamma: float,
    seed: int,
    fit: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q at the logged items, V under the policy)``, float64 ``[S, L]`` (0 at padding).

    ``target`` is the policy's item distribution at the flattened ``[S * L]`` rows. With
    ``fit=False`` the given model is used as it is.
    """
    shape, mask = logged.item.shape, logged.mask
    device = logged.item.device
    model.to(device)
    obs = logged.rows.get("observation").reshape(shape.numel(), -1).to(device)
    item, real = logged.item.reshape(-1), mask.reshape(-1)

    def values() -> torch.Tensor:
        v = target.expectation(lambda items: model.scores(obs, items.to(device)))
        return torch.where(mask, v.reshape(shape), 0.0)

    if fit:
        for iteration in range(logged.horizon):
            if iteration == 0:
                goal = logged.reward
            else:
                following = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
                next_v = torch.cat([values()[:, 1:], torch.zeros_like(logged.reward[:, :1])], 1)
                goal = td0_return_estimate(gamma, next_v, logged.reward, terminated=~following)
            fit_item_values(
                model,
                obs[real],
                item[real],
                goal.reshape(-1)[real],
                seed=seed + iteration,
                epochs=FIRST_EPOCHS if iteration == 0 else LATER_EPOCHS,
                fresh=iteration == 0,
            )
        model.fitted_on = logged.fingerprint
    q = torch.where(mask, model.scores(obs, item[:, None]).reshape(shape), 0.0)
    return q, values()

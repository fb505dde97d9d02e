"""The evaluated policy's item distribution on the logged states, as ``evaluate()`` runs it.

Deterministic (the default, as :func:`~drpo_rl.evaluation.evaluate` runs a policy): the
policy runs under ``ExplorationType.DETERMINISTIC`` and its action is the item it shows (an
item id, or the embedding decoded to the item of highest cosine similarity, exactly as the
env decodes it): a point mass. Stochastic (``ExplorationType.RANDOM``): an item-id
``ProbabilisticActor`` gives its exact item probabilities (``softmax(logits)``); a Gaussian
embedding actor's item distribution has no closed form (the share of the Gaussian that
decodes to each item), so it is estimated by decoding ``mc_samples`` draws per state, and
the Monte-Carlo error of the weights is carried along (:attr:`TargetItems.mc_variance`).

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> rows = TensorDict(observation=torch.tensor([[0.0], [1.0]]), batch_size=[2])
    >>> always_item_2 = TensorDictModule(lambda o: torch.full(o.shape[:1], 2),
    ...                                  in_keys=["observation"], out_keys=["action"])
    >>> target = target_items(always_item_2, rows, torch.tensor([2, 0]), num_items=3)
    >>> target.logged.tolist(), target.items.squeeze(-1).tolist()
    ([1.0, 0.0], [2, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor

from envs.actions.embedding import nearest_items

# Rows per policy call: bounds the memory of one forward pass over large logs.
POLICY_CHUNK = 1 << 16


@dataclass
class TargetItems:
    """The evaluated policy's item distribution at each logged state ``[R]``.

    Attributes:
        logged: float64 ``[R]``, the policy's probability of the logged item.
        items: int64 ``[R, K]``: the item it shows (``K == 1``, a point mass) or ``K``
            Monte-Carlo draws; ``None`` when ``probs`` is given.
        probs: float64 ``[R, N]``, exact item probabilities (a stochastic item-id actor).
        mc_samples: draws per state behind ``logged`` (0: exact).
        mc_variance: float64 ``[R]``, the Monte-Carlo variance of ``logged`` (0 when exact).

    Example:
        >>> probs = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
        >>> target = TargetItems(logged=probs[:, 1], probs=probs)
        >>> target.expectation(lambda items: items.double() * 10).tolist()  # 0.75 * 10
        [7.5]
    """

    logged: torch.Tensor
    items: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    mc_samples: int = 0
    mc_variance: torch.Tensor | None = None

    def expectation(self, scores) -> torch.Tensor:
        """``E_{a ~ policy}[scores(a)]`` per state: ``scores(items [R, K]) -> [R, K]``."""
        if self.probs is not None:
            every = torch.arange(self.probs.shape[1], device=self.probs.device)
            return (self.probs * scores(every.expand(self.probs.shape))).sum(-1)
        return scores(self.items).mean(-1)


def policy_device(policy, default: torch.device) -> torch.device:
    """Where ``policy`` keeps its parameters (or buffers); ``default`` for one with none."""
    for tensor in (
        (*policy.parameters(), *policy.buffers()) if isinstance(policy, torch.nn.Module) else ()
    ):
        return tensor.device
    return default


def target_items(
    policy,
    rows: TensorDictBase,
    logged_item: torch.Tensor,
    *,
    num_items: int,
    deterministic: bool = True,
    unit_embeddings: torch.Tensor | None = None,
    chunk_size: int = 4096,
    mc_samples: int = 256,
    seed: int = 0,
) -> TargetItems:
    """The item distribution of ``policy`` on ``rows`` ``[R]`` (see the module docstring).

    ``unit_embeddings`` (``[N, d]``, unit rows) decodes embedding actions; ``chunk_size``
    items per decoding step; the Monte-Carlo draws come from ``seed`` (the caller's random
    streams are left as they were). Raises ``ValueError`` when the policy's actions do not
    fit the logs' ``num_items`` items (an action-space mismatch).
    """
    device = logged_item.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        parts = [
            _target_chunk(
                policy,
                rows[start : start + POLICY_CHUNK],
                logged_item[start : start + POLICY_CHUNK],
                num_items=num_items,
                deterministic=deterministic,
                unit_embeddings=unit_embeddings,
                chunk_size=chunk_size,
                mc_samples=mc_samples,
            )
            for start in range(0, rows.shape[0], POLICY_CHUNK)
        ]

    def cat(name):
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else torch.cat(values)

    return TargetItems(
        logged=cat("logged"),
        items=cat("items"),
        probs=cat("probs"),
        mc_samples=parts[0].mc_samples,
        mc_variance=cat("mc_variance"),
    )


def _target_chunk(
    policy,
    rows,
    logged_item,
    *,
    num_items,
    deterministic,
    unit_embeddings,
    chunk_size,
    mc_samples,
) -> TargetItems:
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with set_exploration_type(exploration), torch.no_grad():
        if deterministic or not isinstance(policy, ProbabilisticActor):
            action = policy(rows.clone()).get("action")
            items = _decode(action, num_items, unit_embeddings, chunk_size).unsqueeze(-1)
            return TargetItems(logged=_share(items, logged_item), items=items)
        dist = policy.get_dist(rows.clone())
        if isinstance(dist, torch.distributions.Categorical):
            probs = dist.probs.to(torch.float64)
            if probs.shape[-1] != num_items:
                raise ValueError(
                    f"policy: its item distribution has {probs.shape[-1]} items, the logs "
                    f"{num_items}: the policy was made for another action space"
                )
            return TargetItems(
                logged=probs.gather(-1, logged_item[:, None]).squeeze(-1), probs=probs
            )
        draws = dist.sample((mc_samples,))  # [K, R, d]
        items = _decode(draws.flatten(0, 1), num_items, unit_embeddings, chunk_size)
        items = items.reshape(mc_samples, -1).T.contiguous()
        share = _share(items, logged_item)
        return TargetItems(
            logged=share,
            items=items,
            mc_samples=mc_samples,
            mc_variance=share * (1 - share) / mc_samples,
        )


def _share(items: torch.Tensor, logged_item: torch.Tensor) -> torch.Tensor:
    return (items == logged_item[:, None].to(items.device)).to(torch.float64).mean(-1)


def _decode(action, num_items, unit_embeddings, chunk_size) -> torch.Tensor:
    if not action.is_floating_point():
        item = action.long().reshape(action.shape[0])
        bad = (item < 0) | (item >= num_items)
        if bad.any():
            raise ValueError(
                f"policy: expected item ids in [0, {num_items}) (the logs' action space), got "
                f"{item[bad][0].item()}: the policy was made for another catalogue"
            )
        return item
    if unit_embeddings is None:
        raise ValueError(
            "policy: it acts with item embeddings; pass env= (the catalogue its actions "
            "decode against)"
        )
    if action.shape[-1] != unit_embeddings.shape[-1] or unit_embeddings.shape[0] != num_items:
        raise ValueError(
            f"policy: expected embedding actions of dim {unit_embeddings.shape[-1]} over "
            f"{num_items} items, got actions of shape {tuple(action.shape)}: the policy was "
            "made for another action space"
        )
    return nearest_items(action, unit_embeddings.to(action.device), chunk_size)

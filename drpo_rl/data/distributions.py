"""Item distributions over the catalogue for an env's current users (behaviour policies).

Each is a distribution per user over all catalogue items, asked of the env in chunks of
items (`env.reward_table(items)`, `env.rewards(items)`, `env.oracle()`): log-probabilities of
a chunk (`log_probs`), of one item per user (`log_prob`), and exact sampling (`sample`).
Nothing of shape [users, items] is built. The behaviour agents of
:mod:`drpo_rl.data.behavior` are made of these.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from envs import chunks

__all__ = [
    "EpsilonGreedy",
    "ItemDistribution",
    "Mixture",
    "PointMass",
    "Popularity",
    "Softmax",
    "Uniform",
]


class ItemDistribution:
    """A distribution over the catalogue for each of the env's current users.

    Subclasses give the log-probabilities of a chunk of items (:meth:`log_probs`) and of
    one item per user (:meth:`log_prob`); :meth:`sample` draws by inverse CDF over the
    chunks (one uniform per user, so the result does not depend on the chunk size) unless
    a subclass has a cheaper exact rule.

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data import ExpertPolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=3, num_items=1000, seed=0)
        >>> _ = env.reset()
        >>> dist = ExpertPolicy.from_env(env, temperature=0.05).distribution()
        >>> probs = torch.cat([dist.log_probs(part).exp() for part in env.item_chunks(128)], -1)
        >>> probs.shape, torch.allclose(probs.sum(-1), torch.ones(3))
        (torch.Size([3, 1000]), True)
        >>> best = env.oracle()["item"]
        >>> torch.allclose(dist.log_prob(best).exp(), probs.max(-1).values)  # the likeliest
        True
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    def log_probs(self, items: slice) -> torch.Tensor:
        """log pi(i|s) of the items ``items`` (a slice of ids) for every user: [B, n]."""
        raise NotImplementedError

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        """log pi(item|s) of one item per user, int64 [B]: [B]."""
        raise NotImplementedError

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        """Item ids int64 [B] from each user's uniform draw ``uniform`` [B] in [0, 1)."""
        return chunks.sample(
            self.log_probs, self.env.config.num_items, self.env.chunk_size, uniform
        )


class Softmax(ItemDistribution):
    """pi(i|s) ∝ exp(sign * reward_i / temperature), temperature > 0 (the expert's; the
    anti-oracle's with sign -1). Sampled in one pass over the catalogue
    (:func:`envs.chunks.sample_by_chunk`).

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=300, chunk_size=64)
        >>> _ = env.reset()
        >>> dist = Softmax(env, 1.0, 0.1)
        >>> want = torch.softmax(env.reward_table() / 0.1, -1)
        >>> torch.allclose(dist.log_probs(slice(0, 300)).exp(), want)
        True
    """

    def __init__(self, env: Any, sign: float, temperature: float) -> None:
        super().__init__(env)
        self.scale = sign / temperature
        # One pass over the catalogue: each chunk's mass, whose sum is the normaliser.
        by_chunk = chunks.logsumexp_by_chunk(
            lambda items: env.reward_table(items).mul_(self.scale),
            env.config.num_items,
            env.chunk_size,
        )
        self.normaliser = torch.logsumexp(by_chunk, dim=-1)
        self.chunk_log_mass = by_chunk - self.normaliser.unsqueeze(-1)

    def log_probs(self, items: slice, users: torch.Tensor | None = None) -> torch.Tensor:
        # In place: the table is a fresh [B, chunk] block, the largest tensor of the step.
        table = self.env.reward_table(items, users).mul_(self.scale)
        normaliser = self.normaliser if users is None else self.normaliser[users]
        return table.sub_(normaliser.unsqueeze(-1))

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return self.env.rewards(items) * self.scale - self.normaliser

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        env = self.env
        return chunks.sample_by_chunk(
            self.log_probs, self.chunk_log_mass, env.config.num_items, env.chunk_size, uniform
        )


class PointMass(ItemDistribution):
    """All mass on one item per user, ``best`` int64 [B] (e.g. the oracle's).

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=4)
        >>> dist = PointMass(env, torch.tensor([2, 0]))
        >>> dist.sample(torch.rand(2)).tolist(), dist.log_prob(torch.tensor([2, 1])).tolist()
        ([2, 0], [0.0, -inf])
    """

    def __init__(self, env: Any, best: torch.Tensor) -> None:
        super().__init__(env)
        self.best = best

    def log_probs(self, items: slice) -> torch.Tensor:
        ids = torch.arange(items.start, items.stop, device=self.best.device)
        hit = ids == self.best.unsqueeze(-1)
        return torch.where(hit, 0.0, -math.inf)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return torch.where(items == self.best, 0.0, -math.inf)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        return self.best


class Uniform(ItemDistribution):
    """1/N for every item (the random behaviour).

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> dist = Uniform(make_env("RecSimBanditDiscrete", num_envs=2, num_items=8))
        >>> dist.log_prob(torch.tensor([0, 5])).exp().tolist()
        [0.125, 0.125]
        >>> dist.sample(torch.tensor([0.0, 0.99])).tolist()  # uniform draws -> items
        [0, 7]
    """

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.num_items = env.config.num_items

    def log_probs(self, items: slice) -> torch.Tensor:
        shape = (self.env.num_envs, items.stop - items.start)
        return torch.full(shape, -math.log(self.num_items), device=self.env.device)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return torch.full(items.shape, -math.log(self.num_items), device=items.device)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        return (uniform * self.num_items).long().clamp_(max=self.num_items - 1)


class EpsilonGreedy(ItemDistribution):
    """The point mass on ``best`` with probability 1 - epsilon, uniform otherwise.

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=1, num_items=10)
        >>> dist = EpsilonGreedy(env, torch.tensor([4]), 0.5)
        >>> [round(p, 4) for p in dist.log_prob(torch.tensor([4])).exp().tolist()]  # 0.5 + 0.05
        [0.55]
    """

    def __init__(self, env: Any, best: torch.Tensor, epsilon: float) -> None:
        super().__init__(env)
        self.best, self.epsilon, self.num_items = best, epsilon, env.config.num_items

    def _log(self, hit: torch.Tensor) -> torch.Tensor:
        uniform = self.epsilon / self.num_items
        return torch.where(hit, 1.0 - self.epsilon + uniform, uniform).log()

    def log_probs(self, items: slice) -> torch.Tensor:
        ids = torch.arange(items.start, items.stop, device=self.best.device)
        return self._log(ids == self.best.unsqueeze(-1))

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return self._log(items == self.best)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        # u < 1 - epsilon: the best item; above, u rescaled to [0, 1) picks a uniform item
        # (which may be the best one too: its probability is 1 - epsilon + epsilon / N).
        greedy = uniform < 1.0 - self.epsilon
        rescaled = (uniform - (1.0 - self.epsilon)) / max(self.epsilon, 1e-30)
        anyone = (rescaled * self.num_items).long().clamp_(0, self.num_items - 1)
        return torch.where(greedy, self.best, anyone)


class Popularity(ItemDistribution):
    """pi(i|s) ∝ popularity[i], over the whole catalogue or each user's ``shortlist``.

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=1, num_items=10)
        >>> dist = Popularity(env, torch.tensor([[2, 7]]))  # a shortlist of two items
        >>> kept = env.catalogue.popularity[[2, 7]]
        >>> torch.allclose(dist.log_prob(torch.tensor([7])).exp(), kept[1] / kept.sum())
        True
    """

    def __init__(self, env: Any, shortlist: torch.Tensor | None) -> None:
        super().__init__(env)
        self.popularity = env.catalogue.popularity
        self.shortlist = shortlist  # [B, k] item ids, or None
        if shortlist is None:
            self.cdf = env.catalogue.popularity_cdf
        else:
            self.kept = self.popularity[shortlist]  # [B, k]
            self.kept_total = self.kept.sum(-1)

    def log_probs(self, items: slice) -> torch.Tensor:
        part = self.popularity[items].log().expand(self.env.num_envs, -1)
        if self.shortlist is None:
            return part
        offset = self.shortlist - items.start
        inside = (offset >= 0) & (offset < part.shape[-1])
        member = torch.zeros(part.shape, dtype=torch.bool, device=part.device)
        member.scatter_(-1, offset.clamp(0, part.shape[-1] - 1), inside)
        logs = part - self.kept_total.log().unsqueeze(-1)
        return torch.where(member, logs, -math.inf)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        logs = self.popularity[items].log()
        if self.shortlist is None:
            return logs
        member = (self.shortlist == items.unsqueeze(-1)).any(-1)
        return torch.where(member, logs - self.kept_total.log(), -math.inf)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        if self.shortlist is None:
            target = (uniform * self.cdf[-1]).unsqueeze(-1)
            index = torch.searchsorted(self.cdf, target.squeeze(-1), right=True)
            return index.clamp_(max=self.cdf.shape[0] - 1)
        cdf = self.kept.cumsum(-1)
        target = uniform.unsqueeze(-1) * cdf[:, -1:]
        index = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        return self.shortlist.gather(-1, index).squeeze(-1)


class Mixture(ItemDistribution):
    """sum_k w_k pi_k: the mixture's propensities, from its components'.

    Example:
        >>> import math, torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=1, num_items=10)
        >>> weights = torch.tensor([0.5, 0.5]).log()
        >>> dist = Mixture(env, weights, [PointMass(env, torch.tensor([3])), Uniform(env)])
        >>> [round(p, 4) for p in dist.log_prob(torch.tensor([3])).exp().tolist()]  # 0.5 + 0.05
        [0.55]
    """

    def __init__(self, env: Any, log_weights: torch.Tensor, parts: list[ItemDistribution]):
        super().__init__(env)
        self.log_weights, self.parts = log_weights, parts

    def _mix(self, logs: list[torch.Tensor]) -> torch.Tensor:
        shape = (-1,) + (1,) * logs[0].dim()
        return torch.logsumexp(self.log_weights.view(shape) + torch.stack(logs), dim=0)

    def log_probs(self, items: slice) -> torch.Tensor:
        return self._mix([part.log_probs(items) for part in self.parts])

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return self._mix([part.log_prob(items) for part in self.parts])

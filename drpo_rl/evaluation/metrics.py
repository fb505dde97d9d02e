"""Streaming online-evaluation metrics, accumulated chunk by chunk on the rollout's device.

Evaluating a million simulated users does not fit in one rollout, so the metrics are kept as
running sums (float64, on the device that produced the data) and turned into numbers once, at
the end. Each row of a chunk is one simulated user; only the user's *first* session counts
(the steps up to and including its first ``done``), so that every user weighs the same however
quickly they leave: counting sessions in the order they finish would favour short ones.

Example:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> acc = OnlineMetrics(num_items=3, embeddings=None, price=5.0, multi_step=False)
    >>> chunk = TensorDict(
    ...     {
    ...         "oracle_reward": torch.tensor([[[0.9]], [[0.7]]]),
    ...         "next": {
    ...             "reward": torch.tensor([[[0.9]], [[0.2]]]),
    ...             "latent_reward": torch.tensor([[[0.9]], [[0.2]]]),
    ...             "item": torch.tensor([[1], [1]]),
    ...             "done": torch.ones(2, 1, 1, dtype=torch.bool),
    ...         },
    ...     },
    ...     batch_size=[2, 1],
    ... )
    >>> acc.update(chunk, num_users=2)
    >>> m = acc.result()
    >>> round(m["reward"], 3), round(m["ecpm"], 3), round(m["regret"], 3), m["hit_rate"]
    (0.55, 2.75, 0.25, 0.5)
    >>> round(m["coverage"], 3)
    0.333
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase

# Two-sided 95% quantile of the standard normal: the intervals are normal approximations,
# which is accurate for the thousands of users an online evaluation uses.
Z_95 = 1.959963984540054

NEXT_REWARD = ("next", "reward")
NEXT_LATENT = ("next", "latent_reward")
NEXT_ITEM = ("next", "item")
NEXT_DONE = ("next", "done")
NEXT_TERMINATED = ("next", "terminated")
#: The env's privileged truth at each step (``privileged=("oracle",)``): the best item for
#: the state the policy faced, and its noiseless reward.
ORACLE_ITEM = "oracle_item"
ORACLE_REWARD = "oracle_reward"


def first_session_mask(done: torch.Tensor) -> torch.Tensor:
    """Steps that belong to each row's first session: those up to and including its first done.

    ``done`` is bool ``[B, T]``; the result is bool ``[B, T]``.

    Example:
        >>> import torch
        >>> first_session_mask(torch.tensor([[False, True, False, True]])).tolist()
        [[True, True, False, False]]
    """
    done_before = torch.cumsum(done.long(), dim=1) - done.long()
    return done_before == 0


class OnlineMetrics:
    """Running sums of everything :func:`~drpo_rl.evaluation.evaluate` reports.

    Args:
        num_items: catalogue size (for coverage); ``None`` omits coverage.
        embeddings: item embeddings ``[N, d]`` (for diversity); ``None`` omits diversity.
        price: the eCPM price per unit of reward (the paper reports eCPM = 5 x reward).
        multi_step: whether users have sessions of more than one step; adds the session
            return, length, leave rate and within-session diversity to the result.

    The reward interval is the normal interval of a ratio estimator clustered by user
    (total reward over total steps, each user one cluster); for a one-step bandit it is the
    usual ``1.96 * std / sqrt(n)``.

    Example:
        >>> acc = OnlineMetrics(num_items=None, embeddings=None, price=1.0, multi_step=False)
        >>> acc.result()["num_users"]
        0
    """

    def __init__(
        self,
        *,
        num_items: int | None,
        embeddings: torch.Tensor | None,
        price: float,
        multi_step: bool,
    ) -> None:
        self.num_items = num_items
        self.price = float(price)
        self.multi_step = multi_step
        self.unit_embeddings = (
            None
            if embeddings is None
            else torch.nn.functional.normalize(embeddings.to(torch.float64), dim=-1)
        )
        self._sums: dict[str, torch.Tensor] = {}
        self._seen: torch.Tensor | None = None
        self._item_sum: torch.Tensor | None = None
        self.num_users = 0
        self.has_latent = True
        self.has_oracle = True

    def _add(self, name: str, value: torch.Tensor) -> None:
        value = value.to(torch.float64).sum()
        if name in self._sums:
            self._sums[name] += value
        else:
            self._sums[name] = value

    def update(self, chunk: TensorDictBase, *, num_users: int) -> None:
        """Add the first ``num_users`` rows of a collector batch of shape ``[B, T]``."""
        if chunk.batch_dims != 2:
            raise ValueError(
                f"expected a collector batch of shape [users, steps], got {tuple(chunk.shape)}"
            )
        chunk = chunk[:num_users]
        done = chunk.get(NEXT_DONE).reshape(chunk.shape)
        mask = first_session_mask(done)
        weight = mask.to(torch.float64)
        reward = chunk.get(NEXT_REWARD).reshape(chunk.shape).to(torch.float64) * weight
        user_return = reward.sum(1)
        user_length = weight.sum(1)
        self.num_users += chunk.shape[0]
        self._add("steps", user_length)
        self._add("return", user_return)
        self._add("return_sq", user_return**2)
        self._add("length_sq", user_length**2)
        self._add("return_x_length", user_return * user_length)
        self._add("truncated", ~done.any(1))
        terminated = chunk.get(NEXT_TERMINATED, None)
        if terminated is not None:  # the user left (not the length cap, not still there)
            self._add("left", (terminated.reshape(chunk.shape) & mask).any(1))

        latent = chunk.get(NEXT_LATENT, None)
        if latent is None:
            self.has_latent = False
        else:
            latent = latent.reshape(chunk.shape).to(torch.float64)
            self._add("latent", latent * weight)
            best = chunk.get(ORACLE_REWARD, None)
            if best is None:
                self.has_oracle = False
            else:
                best = best.reshape(chunk.shape).to(torch.float64)
                self._add("regret", (best - latent) * weight)
                # A hit is an item as good as the best one: ties (duplicate items, saturated
                # rewards) count as hits rather than depending on argmax tie-breaking.
                self._add("hit", (latent >= best - 1e-6) * weight)

        items = self._items(chunk)
        if items is not None:
            chosen = items[mask]
            self._update_coverage(chosen)
            if self.unit_embeddings is not None:
                self._update_diversity(items, mask)

    def merge(self, other: OnlineMetrics) -> None:
        """Add the users ``other`` accumulated (same catalogue, price and horizon), as if its
        chunks had been folded here after these; merging accumulators in a fixed order
        gives the same numbers wherever each was filled."""
        if (other.num_items, other.price, other.multi_step) != (
            self.num_items,
            self.price,
            self.multi_step,
        ):
            raise ValueError(
                "merge: expected metrics of the same catalogue size, price and horizon, got "
                f"{(other.num_items, other.price, other.multi_step)} and "
                f"{(self.num_items, self.price, self.multi_step)}"
            )
        for name, value in other._sums.items():
            self._add(name, value)
        if other._seen is not None:
            self._seen = other._seen.clone() if self._seen is None else self._seen | other._seen
        if other._item_sum is not None:
            total = other._item_sum
            self._item_sum = total if self._item_sum is None else self._item_sum + total
        self.num_users += other.num_users
        self.has_latent &= other.has_latent
        self.has_oracle &= other.has_oracle

    def _items(self, chunk: TensorDictBase) -> torch.Tensor | None:
        items = chunk.get(NEXT_ITEM, None)
        if items is None:
            action = chunk.get("action", None)
            if action is not None and not action.is_floating_point():
                items = action
        return None if items is None else items.reshape(chunk.shape).long()

    def _update_coverage(self, chosen: torch.Tensor) -> None:
        if self.num_items is None:
            return
        if self._seen is None:
            self._seen = torch.zeros(self.num_items, dtype=torch.bool, device=chosen.device)
        self._seen[chosen] = True

    def _update_diversity(self, items: torch.Tensor, mask: torch.Tensor) -> None:
        emb = self.unit_embeddings.to(items.device)[items] * mask.unsqueeze(-1)
        total = emb.sum((0, 1))
        self._item_sum = total if self._item_sum is None else self._item_sum + total
        if self.multi_step:
            per_user = emb.sum(1)
            length = mask.sum(1).to(torch.float64)
            several = length >= 2
            pair_similarity = (per_user.pow(2).sum(-1) - length) / (length * (length - 1))
            self._add("session_diversity", torch.where(several, 1 - pair_similarity, 0.0))
            self._add("sessions_with_pairs", several)

    def result(self) -> dict[str, float | int]:
        """The metrics as plain Python numbers (one device sync)."""
        if self.num_users == 0:
            return {"num_users": 0}
        s = {k: v.item() for k, v in self._sums.items()}
        n, steps = self.num_users, s["steps"]
        reward = s["return"] / steps
        # Ratio estimator, one cluster per user: residuals R_i - reward * L_i.
        residual_sq = (
            s["return_sq"] - 2 * reward * s["return_x_length"] + reward**2 * s["length_sq"]
        )
        reward_se = math.sqrt(max(residual_sq, 0.0) * n / max(n - 1, 1)) / steps
        out: dict[str, float | int] = {
            "num_users": n,
            "num_steps": int(steps),
            "reward": reward,
            "reward_ci95": Z_95 * reward_se,
            "reward_ci_low": reward - Z_95 * reward_se,
            "reward_ci_high": reward + Z_95 * reward_se,
            "ecpm": self.price * reward,
            "ecpm_ci95": self.price * Z_95 * reward_se,
        }
        if self.has_latent and "latent" in s:
            out["latent_reward"] = s["latent"] / steps
            if self.has_oracle and "regret" in s:
                out["regret"] = s["regret"] / steps
                out["hit_rate"] = s["hit"] / steps
        if self._seen is not None:
            out["coverage"] = self._seen.sum().item() / self.num_items
        if self._item_sum is not None and steps >= 2:
            similarity = (self._item_sum.pow(2).sum().item() - steps) / (steps * (steps - 1))
            out["diversity"] = 1.0 - similarity
        if self.multi_step:
            mean_return = s["return"] / n
            var_return = max(s["return_sq"] / n - mean_return**2, 0.0) * n / max(n - 1, 1)
            out["return"] = mean_return
            out["return_ci95"] = Z_95 * math.sqrt(var_return / n)
            out["length"] = steps / n
            out["truncated_sessions"] = int(s["truncated"])
            if "left" in s:
                out["leave_rate"] = s["left"] / n
            if s.get("sessions_with_pairs", 0) > 0:
                out["session_diversity"] = s["session_diversity"] / s["sessions_with_pairs"]
        return out

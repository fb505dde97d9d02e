"""Confidence intervals of an estimate: percentile bootstrap (default) and Student-t.

Both treat the logged sessions as independent draws from one distribution (i.i.d. users);
neither counts the reward model's own error (it is fitted once and held fixed), so the
model-based estimators' intervals are too narrow when the model is biased.

- ``"bootstrap"``: resample the sessions with replacement ``num_bootstrap`` times (from
  ``seed``), recompute the estimator on each resample, and take the ``alpha/2`` and
  ``1 - alpha/2`` quantiles. It needs no normality and follows the self-normalised ratios'
  skew, but heavy-tailed weights (a few huge ``w``) make it unreliable, as every interval.
- ``"t"``: ``value +- t_{n-1, 1-alpha/2} * se``, with ``se`` the standard deviation of the
  sessions' linearised contributions over ``sqrt(n)`` (the delta method for the ratios).
  It needs the estimate to be near normal: many sessions, no dominating weight.

Example:
    >>> import torch
    >>> from drpo_rl.evaluation.off_policy.estimators import Terms
    >>> terms = Terms(c=torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    >>> low, high, se = interval(terms, "t", alpha=0.05)
    >>> round(low, 3), round(high, 3), round(se, 4)
    (-0.554, 3.554, 0.6455)
"""

from __future__ import annotations

import math

import torch

from drpo_rl.evaluation.off_policy.estimators import Terms
from envs.common.checks import check_choice

INTERVALS = ("bootstrap", "t")
# Resamples per batch of the bootstrap: bounds its memory to about this many x n x T values.
_BOOTSTRAP_BATCH = 64


def standard_error(terms: Terms) -> float:
    """The delta-method standard error of ``terms``' value."""
    psi = terms.influence()
    n = psi.shape[0]
    return psi.std().item() / math.sqrt(n) if n > 1 else math.nan


def interval(
    terms: Terms,
    kind: str = "bootstrap",
    *,
    alpha: float = 0.05,
    num_bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(low, high, standard error)`` of the ``1 - alpha`` interval of ``kind``."""
    check_choice("interval", kind, INTERVALS)
    se = standard_error(terms)
    if kind == "t":
        from scipy.stats import t as student_t

        value = terms.value()
        half = float(student_t.ppf(1 - alpha / 2, max(terms.n - 1, 1))) * se
        return value - half, value + half, se
    values = bootstrap_values(terms, num_bootstrap=num_bootstrap, seed=seed)
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64, device=values.device)
    low, high = torch.quantile(values, q).tolist()
    return low, high, se


def bootstrap_values(terms: Terms, *, num_bootstrap: int, seed: int) -> torch.Tensor:
    """The estimator on ``num_bootstrap`` resamples of the sessions (float64 ``[B]``),
    drawn on the terms' device from a generator seeded with ``seed``."""
    device = terms._device
    generator = torch.Generator(device=device).manual_seed(seed)
    values = []
    for start in range(0, num_bootstrap, _BOOTSTRAP_BATCH):
        size = min(_BOOTSTRAP_BATCH, num_bootstrap - start)
        index = torch.randint(terms.n, (size, terms.n), generator=generator, device=device)
        values.append(terms.resampled(index))
    return torch.cat(values)

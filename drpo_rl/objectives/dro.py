"""The optimistic DRO problem behind DRPO, solved exactly (docs/method.md, "Optimistic DRO
and the exact hard filter").

On a sample of ``N`` scores ``r``, the optimistic CVaR problem is the linear program

    max_w  sum_i w_i r_i / N   s.t.  0 <= w_i <= 1/kappa,  sum_i w_i / N = 1,

whose solution fills the top scores with the largest allowed weight ``1/kappa`` until the
mass runs out: ``floor(kappa N)`` samples get ``1/kappa``, the next one gets the fractional
remainder, the rest get 0. Its dual is the CVaR threshold
``nu* = argmin_nu nu + E[(r - nu)_+] / kappa``, and both optima are equal.

DRPO's per-batch filter (:func:`top_fraction_mask`) is the hard version used in training:
exactly ``K = max(1, floor(kappa N))`` samples, no fractional boundary weight.
"""

from __future__ import annotations

import torch

from envs.common.checks import fail

__all__ = ["cvar_threshold", "optimistic_dro_weights", "top_fraction_mask"]

# floor(kappa * N) is taken with this slack, so that kappa = K / N keeps exactly K samples
# even when kappa * N rounds to just below K in floating point (e.g. float32 0.7 * 10).
_FLOOR_SLACK = 1e-4


def _check_kappa(kappa) -> None:
    value = float(kappa) if not isinstance(kappa, torch.Tensor) else None
    if value is not None and not 0.0 < value <= 1.0:
        fail("kappa", "a number in (0, 1]", kappa)


def _check_scores(scores: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor) or not torch.is_floating_point(scores):
        raise ValueError("scores must be a float tensor of shape [..., N].")
    if scores.ndim == 0 or scores.shape[-1] == 0:
        raise ValueError(f"scores must have shape [..., N] with N >= 1, got {tuple(scores.shape)}.")


def optimistic_dro_weights(scores: torch.Tensor, kappa: float | torch.Tensor) -> torch.Tensor:
    """The exact solution ``w`` of the optimistic DRO linear program, along the last dim.

    ``w_i`` lies in ``[0, 1/kappa]`` and ``mean(w) == 1``; the ``j``-th largest score
    (0-based) gets ``clamp(N - j / kappa, 0, 1/kappa)``, i.e. the mass left after ``j``
    full slots. Ties are broken by position (the earlier sample first), which is one of the
    optimal solutions; the objective ``mean(w * scores)`` is the same for all of them.

    Args:
        scores (Tensor): float scores of shape ``[..., N]``.
        kappa (float or Tensor): the density-ratio bound parameter in ``(0, 1]``.

    Returns:
        Tensor of weights with the shape and dtype of ``scores``.

    Examples:
        >>> optimistic_dro_weights(torch.tensor([0.1, 0.9, 0.5, 0.3]), 0.3)
        tensor([0.0000, 3.3333, 0.6667, 0.0000])
        >>> optimistic_dro_weights(torch.tensor([2.0, 1.0]), 1.0)
        tensor([1., 1.])
    """
    _check_scores(scores)
    _check_kappa(kappa)
    n = scores.shape[-1]
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    inv_kappa = 1.0 / torch.as_tensor(kappa, dtype=torch.float64, device=scores.device)
    slots = torch.arange(n, dtype=torch.float64, device=scores.device)
    sorted_weights = torch.minimum((n - slots * inv_kappa).clamp_min(0.0), inv_kappa)
    sorted_weights = sorted_weights.to(scores.dtype).expand_as(scores)
    return torch.empty_like(scores).scatter_(-1, order, sorted_weights)


def cvar_threshold(scores: torch.Tensor, kappa: float | torch.Tensor) -> torch.Tensor:
    """A minimiser ``nu`` of ``nu + mean((scores - nu)_+) / kappa``, along the last dim.

    The objective is convex and piecewise linear with slope
    ``1 - #{r > nu} / (kappa N)``; it is minimised by the ``ceil(kappa N)``-th largest
    score (1-based). When ``kappa N`` is an integer ``K`` every ``nu`` between the
    ``K+1``-th and the ``K``-th largest score is optimal and this returns one of them. The
    minimum value equals the optimum of :func:`optimistic_dro_weights`'s linear program.

    Args:
        scores (Tensor): float scores of shape ``[..., N]``.
        kappa (float or Tensor): in ``(0, 1]``.

    Returns:
        Tensor of shape ``scores.shape[:-1]``.

    Examples:
        >>> cvar_threshold(torch.tensor([0.1, 0.9, 0.5, 0.3]), 0.3)
        tensor(0.5000)
        >>> cvar_threshold(torch.tensor([0.1, 0.9, 0.5, 0.3]), 1.0)
        tensor(0.1000)
    """
    _check_scores(scores)
    _check_kappa(kappa)
    n = scores.shape[-1]
    kappa = torch.as_tensor(kappa, dtype=torch.float64, device=scores.device)
    rank = torch.ceil(kappa * n).clamp(1, n).to(torch.long) - 1
    sorted_scores = torch.sort(scores, dim=-1, descending=True).values
    index = rank.expand(*scores.shape[:-1], 1)
    return sorted_scores.gather(-1, index).squeeze(-1)


def top_fraction_mask(
    scores: torch.Tensor,
    kappa: float | torch.Tensor,
    groups: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DRPO's hard filter: the top ``K = max(1, floor(kappa N))`` samples by score.

    With ``groups`` (integer ids, one per sample) the rule is applied within each group:
    a group of ``n_g`` samples keeps its top ``max(1, floor(kappa n_g))``, so every group
    keeps at least its best sample. With ``valid`` (a bool mask) only the valid samples
    take part: ``N`` and ``n_g`` count valid samples, an invalid one is never kept (a group
    without valid samples keeps none), and the result on the valid samples is that of the
    valid samples alone. Everything is
    vectorised (two stable sorts, no loop over groups) and has static shapes, so it runs
    under ``torch.compile(fullgraph=True)`` with ``kappa`` a tensor.

    Exactly ``K`` samples are kept even under ties; tied scores are taken in order of
    position. ``threshold`` is the smallest kept score of the sample's group (``nu``).

    Args:
        scores (Tensor): float scores of shape ``[N]``.
        kappa (float or Tensor): kept fraction in ``(0, 1]`` (a 0-d tensor stays on device).
        groups (Tensor, optional): integer group ids of shape ``[N]``.
        valid (Tensor, optional): bool mask of shape ``[N]``, ``False`` for a sample to
            leave out.

    Returns:
        ``(kept, threshold)``: a bool mask ``[N]`` and the per-sample threshold ``[N]``.

    Examples:
        >>> kept, nu = top_fraction_mask(torch.tensor([0.1, 0.9, 0.5, 0.3]), 0.5)
        >>> kept
        tensor([False,  True,  True, False])
        >>> nu
        tensor([0.5000, 0.5000, 0.5000, 0.5000])
        >>> kept, nu = top_fraction_mask(
        ...     torch.tensor([0.1, 0.9, 0.5, 0.3]), 0.5, groups=torch.tensor([0, 0, 1, 1]))
        >>> kept
        tensor([False,  True,  True, False])
        >>> nu
        tensor([0.9000, 0.9000, 0.5000, 0.5000])
        >>> kept, nu = top_fraction_mask(
        ...     torch.tensor([0.1, 0.9, 0.5, 0.3]), 0.5, valid=torch.tensor([1, 0, 1, 1]).bool())
        >>> kept  # top 1 of the 3 valid samples
        tensor([False, False,  True, False])
    """
    if scores.ndim != 1 or scores.numel() == 0:
        raise ValueError(f"scores must have shape [N] with N >= 1, got {tuple(scores.shape)}.")
    _check_kappa(kappa)
    n = scores.shape[0]
    positions = torch.arange(n, device=scores.device)
    if valid is None:
        order = torch.argsort(scores, descending=True, stable=True)
    else:
        if valid.shape != scores.shape or valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool mask of shape {tuple(scores.shape)}.")
        # Invalid samples sort last (within their group, after the group sort below).
        ranked = torch.where(valid, scores, float("-inf"))
        order = torch.argsort(ranked, descending=True, stable=True)
    if groups is None:
        count, start = n, 0
        if valid is not None:
            count = valid.sum()
    else:
        if groups.shape != scores.shape or torch.is_floating_point(groups):
            raise ValueError(
                f"groups must be integer ids of shape {tuple(scores.shape)}, "
                f"got dtype {groups.dtype} and shape {tuple(groups.shape)}."
            )
        # Stable sort by group after sorting by score: score order is kept within groups.
        order = order[torch.argsort(groups[order], stable=True)]
        sorted_groups = groups[order]
        change = sorted_groups[1:] != sorted_groups[:-1]
        true = torch.ones(1, dtype=torch.bool, device=scores.device)
        is_start = torch.cat([true, change])
        is_end = torch.cat([change, true])
        start = torch.cummax(torch.where(is_start, positions, 0), 0).values
        end = torch.cummin(torch.where(is_end, positions, n - 1).flip(0), 0).values.flip(0)
        count = end - start + 1
        if valid is not None:
            # Valid samples come first in each group: count them with a running sum.
            valid_sorted = valid[order].to(positions.dtype)
            running = torch.cumsum(valid_sorted, 0)
            count = running[end] - running[start] + valid_sorted[start]
    kappa = torch.as_tensor(kappa, device=scores.device)
    keep = torch.floor(kappa * count + _FLOOR_SLACK).clamp(min=1).to(positions.dtype)
    kept_sorted = (positions - start) < keep
    if valid is not None:
        kept_sorted = kept_sorted & valid[order]
    # gather, not indexing with a 0-d tensor: that would be a data-dependent .item().
    boundary = (start + keep - 1).reshape(-1)
    threshold_sorted = scores.gather(0, order.gather(0, boundary))
    kept = torch.empty_like(kept_sorted).scatter(0, order, kept_sorted)
    if groups is None:
        threshold = threshold_sorted.expand_as(scores)
    else:
        threshold = torch.empty_like(scores).scatter(0, order, threshold_sorted)
    return kept, threshold

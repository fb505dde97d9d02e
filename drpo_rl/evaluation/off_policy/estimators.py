"""The estimators, torch-native: each is a few per-session terms whose sums give the value.

Every estimator here is written as

``V = sum_t (sum_i a_it / sum_i b_it) + mean_i c_i``

over ``n`` sessions ``i`` and steps ``t`` (:class:`Terms`; ``b`` omitted means 1, a plain
mean). That one form gives the value, its bootstrap (resample sessions, recompute) and its
linearised standard error (the delta method for the self-normalised ratios) in one place,
:mod:`~drpo_rl.evaluation.off_policy.intervals`.

With ``w = pi(a|x) / mu(a|x)`` the importance weight of the logged item, ``q = r_hat(x, a)``
the reward model at the logged item and ``v = E_{a' ~ pi} r_hat(x, a')`` (horizon 1), or
``rho_t`` the product of the weights up to step ``t`` and ``Q``/``V`` the fitted Q-function
of the evaluated policy (sessions, discount ``gamma``):

============  =====================================================  ==================
name          value                                                   unbiased if
============  =====================================================  ==================
dm            mean v  (sessions: mean V(s_0))                         the model is exact
ips           mean w r                                                mu > 0 where pi > 0
snips         sum w r / sum w                                         (consistent)
clipped-ips   mean min(w, clip) r                                     no w > clip
dr            mean [v + w (r - q)]  (sessions: the per-decision DR)   mu known, or model
sndr          mean v + sum w (r - q) / sum w                          (consistent)
switch-dr     mean [v + w (r - q) 1[w <= clip]]                       no w > clip, or model
pdis          sum_t gamma^t mean rho_t r_t                            mu > 0 where pi > 0
wpdis         sum_t gamma^t sum rho_t r_t / sum rho_t                 (consistent)
============  =====================================================  ==================

Example:
    >>> import torch
    >>> w = torch.tensor([[2.0], [0.0], [2.0], [0.0]], dtype=torch.float64)
    >>> r = torch.tensor([[1.0], [1.0], [0.0], [0.0]], dtype=torch.float64)
    >>> ips(w, r).value(), snips(w, r).value()
    (0.5, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Terms:
    """``V = sum_t (sum_i a[i, t] / sum_i b[i, t]) + mean_i c[i]`` (``b``/``c`` optional).

    ``a`` and ``b`` are float64 ``[n, T]``, ``c`` is ``[n]``; ``weights`` (``[n]``) are the
    importance weights the estimator uses, for the diagnostics, and ``clipped`` (bool
    ``[n]``) marks those its clip or switch changed.

    Example:
        >>> a = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
        >>> Terms(a=a).value(), Terms(a=a, b=2 * a).value()  # mean 2; ratio 4 / 8
        (2.0, 0.5)
        >>> Terms(a=a).resampled(torch.tensor([[1, 1], [0, 0]])).tolist()
        [3.0, 1.0]
    """

    a: torch.Tensor | None = None
    b: torch.Tensor | None = None
    c: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    clipped: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int((self.a if self.a is not None else self.c).shape[0])

    def value(self) -> float:
        return float(self.resampled(None)[0])

    def resampled(self, index: torch.Tensor | None) -> torch.Tensor:
        """The value on each row of session indices ``index`` ``[B, n]`` (None: the logs)."""
        total = 0.0
        if self.a is not None:
            a = self.a.unsqueeze(0) if index is None else self.a[index]  # [B, n, T]
            if self.b is None:
                total = total + a.mean(1).sum(-1)
            else:
                b = self.b.unsqueeze(0) if index is None else self.b[index]
                total = total + (a.sum(1) / b.sum(1)).nan_to_num(0.0).sum(-1)
        if self.c is not None:
            c = self.c.unsqueeze(0) if index is None else self.c[index]
            total = total + c.mean(1)
        return torch.as_tensor(total, dtype=torch.float64).reshape(-1)

    def influence(self) -> torch.Tensor:
        """Each session's linearised contribution ``[n]``; its mean is the value and its
        standard deviation over ``sqrt(n)`` the delta-method standard error."""
        psi = torch.zeros(self.n, dtype=torch.float64, device=self._device)
        if self.a is not None:
            if self.b is None:
                psi = psi + self.a.sum(-1)
            else:
                mean_b = self.b.mean(0)
                ratio = (self.a.sum(0) / self.b.sum(0)).nan_to_num(0.0)
                psi = psi + ((self.a - ratio * self.b) / mean_b).nan_to_num(0.0).sum(-1)
                psi = psi + ratio.sum()
        if self.c is not None:
            psi = psi + self.c
        return psi

    @property
    def _device(self) -> torch.device:
        return (self.a if self.a is not None else self.c).device


def _first_step(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 2:
        if x.shape[1] != 1:
            raise ValueError(
                f"a horizon-1 estimator got sessions of {x.shape[1]} steps: use dm, dr, pdis "
                "or wpdis for session logs"
            )
        return x[:, 0]
    return x


def dm(v: torch.Tensor) -> Terms:
    """Direct method: the model's value of the policy at each logged (first) state."""
    return Terms(c=v[:, 0] if v.ndim == 2 else v)


def ips(w: torch.Tensor, r: torch.Tensor) -> Terms:
    """Inverse propensity scoring, ``mean w r``."""
    w, r = _first_step(w), _first_step(r)
    return Terms(a=(w * r)[:, None], weights=w)


def snips(w: torch.Tensor, r: torch.Tensor) -> Terms:
    """Self-normalised IPS, ``sum w r / sum w`` (equals IPS when the weights average 1)."""
    w, r = _first_step(w), _first_step(r)
    return Terms(a=(w * r)[:, None], b=w[:, None], weights=w)


def clipped_ips(w: torch.Tensor, r: torch.Tensor, clip: float) -> Terms:
    """IPS with every weight above ``clip`` set to ``clip`` (biased down where it bites)."""
    w, r = _first_step(w), _first_step(r)
    return Terms(a=(w.clamp(max=clip) * r)[:, None], weights=w, clipped=w > clip)


def dr(w, r, q, v) -> Terms:
    """Doubly robust, ``mean [v + w (r - q)]``: the model, corrected by weighted residuals."""
    w, r, q, v = map(_first_step, (w, r, q, v))
    return Terms(a=(v + w * (r - q))[:, None], weights=w)


def sndr(w, r, q, v) -> Terms:
    """Self-normalised DR, ``mean v + sum w (r - q) / sum w``."""
    w, r, q, v = map(_first_step, (w, r, q, v))
    return Terms(a=(w * (r - q))[:, None], b=w[:, None], c=v, weights=w)


def switch_dr(w, r, q, v, clip: float) -> Terms:
    """Switch-DR: DR where ``w <= clip``, the model alone (DM) where ``w > clip``."""
    w, r, q, v = map(_first_step, (w, r, q, v))
    keep = w <= clip
    return Terms(a=(v + torch.where(keep, w * (r - q), 0.0))[:, None], weights=w, clipped=~keep)


def _discounts(shape, gamma: float, device) -> torch.Tensor:
    return gamma ** torch.arange(shape[1], device=device, dtype=torch.float64)


def pdis(w: torch.Tensor, r: torch.Tensor, gamma: float = 1.0) -> Terms:
    """Per-decision importance sampling over sessions ``[n, T]`` (padding: w = 1, r = 0)."""
    rho = w.cumprod(1)
    return Terms(a=_discounts(w.shape, gamma, w.device) * rho * r, weights=rho[:, -1])


def wpdis(w: torch.Tensor, r: torch.Tensor, gamma: float = 1.0) -> Terms:
    """Weighted PDIS: each step's weighted mean reward, ``sum_i rho_it r_it / sum_i rho_it``."""
    rho = w.cumprod(1)
    return Terms(a=_discounts(w.shape, gamma, w.device) * rho * r, b=rho, weights=rho[:, -1])


def session_dr(w, r, q, v, mask, gamma: float = 1.0) -> Terms:
    """Per-decision doubly robust (Jiang and Li), ``sum_t gamma^t [rho_t (r_t - Q_t) +
    rho_{t-1} V_t]``; at horizon 1 it is :func:`dr`."""
    rho = w.cumprod(1)
    before = torch.cat([torch.ones_like(rho[:, :1]), rho[:, :-1]], 1)
    step = torch.where(mask, rho * (r - q) + before * v, 0.0)
    return Terms(c=(_discounts(w.shape, gamma, w.device) * step).sum(1), weights=rho[:, -1])

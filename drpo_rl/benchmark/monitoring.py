"""Phantom-gradient monitoring of the learners the paper contrasts: APG against DRPO.

At each learning-curve point the benchmark measures, on the last training batch, how much
of the policy gradient comes from negative-weight (repulsive) samples and how much from
positive ones, with :class:`drpo_rl.diagnostics.PhantomGradientMonitor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tensordict import TensorDictBase

# The learners whose monitor curves the benchmark records (and plots side by side).
MONITORED = ("apg", "drpo")


def phantom_report(algo: Any, batch: TensorDictBase) -> dict[str, float]:
    """The monitor's scalars for ``algo``'s policy loss on ``batch``.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.algorithms import build
        >>> from drpo_rl.models import PolicySpecs
        >>> _ = torch.manual_seed(0)
        >>> algo = build("apg", PolicySpecs(obs_dim=3, action_dim=2), num_cells=8, baseline="mean")
        >>> batch = TensorDict({"observation": torch.randn(16, 3), "action": torch.randn(16, 2),
        ...                     ("next", "reward"): torch.rand(16, 1)}, [16])
        >>> report = phantom_report(algo, batch)
        >>> report["frac_negative"] > 0, "grad_loc_neg" in report
        (True, True)
    """
    from drpo_rl.diagnostics import PhantomGradientMonitor

    monitor = PhantomGradientMonitor(algo.loss_modules["policy"], keep_history=False)
    return {key: float(value) for key, value in monitor(batch).items()}


def monitor_for(algorithm: str) -> Callable[[Any, TensorDictBase], dict[str, float]] | None:
    """The monitor to run for ``algorithm``, or ``None`` if it is not monitored.

    Example:
        >>> monitor_for("drpo") is phantom_report, monitor_for("bc")
        (True, None)
    """
    return phantom_report if algorithm in MONITORED else None

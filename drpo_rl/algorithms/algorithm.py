"""What the registry builds: one trainable algorithm, with its one-step ``update``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.objectives import LossModule
from torchrl.objectives.common import AUTO_LOSS_MASK_KEYS
from torchrl.objectives.utils import TargetNetUpdater

from drpo_rl.algorithms.transitions import complete_terminal_transitions
from drpo_rl.objectives.inputs import check_batch, valid_rows

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_LR", "Algorithm", "AlgorithmParts", "make_adam"]

# The method's optimisation set-up (docs/method.md, "Baselines and training set-up").
DEFAULT_LR = 3e-4
DEFAULT_BATCH_SIZE = 320

# What a loss's state update takes: the 0-d terms of the step (e.g. DRPOLoss.update).
StateUpdate = Callable[[Mapping[str, torch.Tensor]], None]


def make_adam(loss_modules: dict[str, LossModule], lr: float) -> torch.optim.Adam:
    """One Adam over the trainable parameters of all the loss modules, each counted once.

    Loss modules of one algorithm may hold the same network (e.g. the actor of DRPO-Q's
    policy loss and of its IQL critic loss); an optimiser must see each parameter once.
    Target parameters are buffers in TorchRL losses, so they are not included.
    """
    seen: set[int] = set()
    params = []
    for module in loss_modules.values():
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return torch.optim.Adam(params, lr=lr)


@dataclass
class Algorithm:
    """A policy with the losses, optimiser and target updaters that train it.

    ``update(batch)`` is one gradient step: ``compute(batch)`` gives the loss terms
    (entries named ``loss_*``, summed and back-propagated; every loss term only reaches
    the parameters it is meant to train) and metrics; the optimiser steps; target networks
    are updated; the state updates (e.g. ``DRPOLoss.update``, the adaptive kappa) read the
    step's terms (the losses' forwards change no state). It returns the detached terms,
    without host synchronisation, so that it can be wrapped in ``torch.compile``.

    Attributes:
        name: the registry name.
        policy: the actor to evaluate/deploy (reads ``"observation"``, writes ``"action"``).
        loss_modules: the TorchRL loss modules, by role (``"policy"``, ``"critic"``...).
        optimizer: one Adam over all their trainable parameters.
        compute: ``batch -> dict`` of loss terms and metrics (0-d tensors).
        target_updaters: TorchRL ``SoftUpdate``/``HardUpdate`` stepped after each update.
        state_updates: callables ``terms -> None`` run last in each update with the terms
            ``compute`` returned (e.g. ``DRPOLoss.update``: the adaptive kappa).
        hparams: the resolved hyper-parameters (defaults included), for logging.
        batch_size: the mini-batch size to sample (paper: 320).
        online: ``True`` when ``update`` expects fresh on-policy rollouts (PPO), not logs.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.algorithms import build
        >>> from drpo_rl.models import PolicySpecs
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> algo = build("awr", PolicySpecs(obs_dim=4, num_items=6), beta=1.0)
        >>> batch = TensorDict({
        ...     "observation": torch.randn(8, 4), "action": torch.randint(6, (8,)),
        ...     ("next", "reward"): torch.rand(8, 1)}, [8])
        >>> metrics = algo.update(batch)
        >>> sorted(k for k in metrics if k.startswith("loss_"))
        ['loss_objective', 'loss_value']
        >>> algo.hparams["beta"], algo.batch_size
        (1.0, 320)
    """

    name: str
    policy: TensorDictModule
    loss_modules: dict[str, LossModule]
    optimizer: torch.optim.Optimizer
    compute: Callable[[TensorDictBase], dict[str, torch.Tensor]]
    target_updaters: tuple[TargetNetUpdater, ...] = ()
    state_updates: tuple[StateUpdate, ...] = ()
    hparams: dict[str, Any] = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH_SIZE
    online: bool = False

    def update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """One gradient step on ``batch``; returns the detached loss terms and metrics.

        An empty batch, or a NaN, infinity or value beyond float32-safe squares in an entry
        any of the losses reads (on a row that counts), is refused with a ``ValueError``
        naming the entry and the number of rows, before any parameter changes
        (:func:`~drpo_rl.objectives.inputs.check_batch`; skipped inside ``torch.compile``).
        """
        self.check(batch)
        terms = self.compute(batch)
        total = sum(value for key, value in terms.items() if key.startswith("loss_"))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        for updater in self.target_updaters:
            updater.step()
        terms = {key: value.detach() for key, value in terms.items()}
        for state_update in self.state_updates:
            state_update(terms)
        return terms

    def check(self, batch: TensorDictBase) -> None:
        """Raise ``ValueError`` if ``batch`` is empty or holds a value no loss can use.

        Rows a validity mask leaves out are exempt only when every loss selects them away
        (``masks_non_finite_rows``, true of the suite's weighted losses); TorchRL's losses
        multiply by the mask, and NaN times 0 is NaN, so for them every row is checked.
        """
        losses = self.loss_modules.values()
        keys = [key for loss in losses for key in loss.in_keys]
        valid = None
        if all(getattr(loss, "masks_non_finite_rows", False) for loss in losses):
            valid = valid_rows(batch, AUTO_LOSS_MASK_KEYS, batch.batch_size)
        check_batch(self.name, batch, keys, valid)


def scalar_terms(out: TensorDictBase, prefix: str = "") -> dict[str, torch.Tensor]:
    """The 0-d entries of a loss output as a flat dict (per-sample diagnostics dropped)."""
    return {
        prefix + key: value
        for key, value in out.items()
        if isinstance(value, torch.Tensor) and value.ndim == 0
    }


def loss_compute(
    loss: LossModule, *, transitions: bool = False
) -> Callable[[TensorDictBase], dict[str, torch.Tensor]]:
    """The ``compute`` of an algorithm trained by one loss: its 0-d outputs on the batch.

    ``transitions=True`` first completes terminal transitions, for the TD-based TorchRL
    losses that read the next state (see :func:`complete_terminal_transitions`).
    """

    def compute(batch: TensorDictBase) -> dict[str, torch.Tensor]:
        if transitions:
            batch = complete_terminal_transitions(batch)
        return scalar_terms(loss(batch))

    return compute


@dataclass
class AlgorithmParts:
    """What a registry builder makes for one algorithm: everything but the optimiser.

    The registry turns it into the :class:`Algorithm` with :meth:`algorithm`, so that the
    optimiser (:func:`make_adam`), the learning rate and the batch size are set in one place
    for every entry. The attributes are those of :class:`Algorithm` of the same names.

    Examples:
        >>> from drpo_rl.algorithms import NetworkOptions
        >>> from drpo_rl.algorithms.torchrl_baselines import build_bc
        >>> from drpo_rl.models import PolicySpecs
        >>> parts = build_bc(PolicySpecs(obs_dim=4, action_dim=2), NetworkOptions(num_cells=16))
        >>> sorted(parts.loss_modules), parts.target_updaters, parts.online
        (['policy'], (), False)
        >>> algo = parts.algorithm("bc", lr=1e-3, batch_size=32)
        >>> algo.optimizer.param_groups[0]["lr"], algo.batch_size
        (0.001, 32)
    """

    policy: TensorDictModule
    loss_modules: dict[str, LossModule]
    compute: Callable[[TensorDictBase], dict[str, torch.Tensor]]
    target_updaters: tuple[TargetNetUpdater, ...] = ()
    online: bool = False
    state_updates: tuple[StateUpdate, ...] = ()

    def algorithm(self, name: str, lr: float, batch_size: int) -> Algorithm:
        """The :class:`Algorithm` named ``name``, with one Adam over all the losses."""
        return Algorithm(
            name=name,
            policy=self.policy,
            loss_modules=self.loss_modules,
            optimizer=make_adam(self.loss_modules, lr),
            compute=self.compute,
            target_updaters=self.target_updaters,
            state_updates=self.state_updates,
            batch_size=batch_size,
            online=self.online,
        )

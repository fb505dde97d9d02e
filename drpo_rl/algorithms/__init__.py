"""drpo_rl.algorithms: one registry of every algorithm of the suite.

``build(name, env_or_specs, **hparams)`` returns an :class:`Algorithm` (policy, TorchRL loss
modules, optimiser, target updaters, ``update(batch)``); ``list_algorithms()`` the names,
``offline_algorithms()`` those that train on logs; ``options(name)`` an entry's
hyper-parameters with their defaults. A new baseline is one entry of ``ALGORITHMS``
(:mod:`drpo_rl.algorithms.registry`).
"""

from drpo_rl.algorithms.algorithm import DEFAULT_BATCH_SIZE, DEFAULT_LR, Algorithm
from drpo_rl.algorithms.networks import NetworkOptions
from drpo_rl.algorithms.registry import (
    ALGORITHMS,
    build,
    list_algorithms,
    offline_algorithms,
    options,
)
from drpo_rl.algorithms.transitions import complete_terminal_transitions

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LR",
    "Algorithm",
    "NetworkOptions",
    "build",
    "complete_terminal_transitions",
    "list_algorithms",
    "offline_algorithms",
    "options",
]

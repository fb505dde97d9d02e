"""The benchmark: scenarios x algorithms x seeds, from logs to online evaluation.

The public names load on first use, so that building the ``drpo-rl`` command line (which
imports :mod:`drpo_rl.benchmark.presets`) does not import torch.

The flow runs one way: :mod:`.presets` (the config) -> :mod:`.grid` (which runs, skipping
finished ones) -> :mod:`.run` (one run: train, evaluate) -> :mod:`.store` (the output
folder); :mod:`.pool` spreads the runs over worker processes, :mod:`.report` writes tables
and plots.

Example:
    >>> from drpo_rl.benchmark import PRESETS, make_config
    >>> sorted(PRESETS)
    ['default', 'paper', 'sessions', 'tiny']
    >>> make_config("tiny", algorithms=["nope"])
    Traceback (most recent call last):
    ...
    ValueError: unknown algorithm(s) ['nope']; valid algorithms: ...
"""

import importlib

_EXPORTS = {
    "PRESETS": "drpo_rl.benchmark.presets",
    "BenchmarkConfig": "drpo_rl.benchmark.presets",
    "make_config": "drpo_rl.benchmark.presets",
    "BenchmarkReport": "drpo_rl.benchmark.grid",
    "run_benchmark": "drpo_rl.benchmark.grid",
    "write_report": "drpo_rl.benchmark.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'drpo_rl.benchmark' has no attribute {name!r}")

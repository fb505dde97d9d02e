"""A trained policy back from its weights: the registry rebuilds the algorithm, the weights load.

Weights are plain tensors (a ``state_dict``) read with ``torch.load(weights_only=True)``:
nothing is unpickled. A file that is not such weights, or weights of another network,
raises ``ValueError`` naming the file. The benchmark (:mod:`drpo_rl.benchmark.policies`)
and the command line use this to evaluate a finished run again.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

__all__ = ["load_policy"]


def load_policy(
    algorithm: str, env_or_specs: Any, weights: str | os.PathLike, hparams: Mapping[str, Any]
):
    """The policy of registry ``algorithm`` built with ``hparams`` for an env (or its
    ``PolicySpecs``), with the ``state_dict`` saved at ``weights`` loaded (on the CPU).

    Example:
        >>> import tempfile, torch
        >>> from drpo_rl.algorithms import build
        >>> from drpo_rl.models import PolicySpecs
        >>> specs = PolicySpecs(obs_dim=3, action_dim=2)
        >>> trained = build("bc", specs, num_cells=8).policy
        >>> path = f"{tempfile.mkdtemp()}/bc.pt"
        >>> torch.save(trained.state_dict(), path)
        >>> policy = load_policy("bc", specs, path, {"num_cells": 8})
        >>> all(torch.equal(a, b) for a, b in zip(policy.parameters(), trained.parameters()))
        True
    """
    import torch

    from drpo_rl.algorithms import build

    policy = build(algorithm, env_or_specs, **hparams).policy
    try:
        state = torch.load(weights, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise ValueError(
            f"{weights}: not a readable policy weights file (only tensors and plain containers "
            f"are loaded): {_one_line(error)}"
        ) from error
    if not (isinstance(state, Mapping) and all(isinstance(k, str) for k in state)):
        raise ValueError(
            f"{weights}: expected a policy state_dict (names -> tensors), got a "
            f"{type(state).__name__}"
        )
    try:
        policy.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{weights}: does not fit a {algorithm!r} policy built with {dict(hparams)}: "
            f"{_one_line(error)}"
        ) from error
    return policy


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 400 else text[:400] + " ..."

"""Online evaluation of policies against simulated users, through TorchRL collectors, and
off-policy evaluation from logs alone (:mod:`drpo_rl.evaluation.off_policy`).

The public names load on first use, so that building the ``drpo-rl`` command line (which
imports :mod:`drpo_rl.commands.evaluate`) does not import torch.

Example:
    >>> from drpo_rl.evaluation import evaluate, oracle_policy
    >>> from envs import make_env
    >>> oracle = oracle_policy(make_env("RecSimBanditDiscrete"))
    >>> evaluate(oracle, "RecSimBanditDiscrete", num_users=128)["hit_rate"]
    1.0
"""

import importlib

_EXPORTS = {
    "evaluate": "drpo_rl.evaluation.online",
    "evaluation_env": "drpo_rl.evaluation.online",
    "OnlineMetrics": "drpo_rl.evaluation.metrics",
    "OffPolicyEstimate": "drpo_rl.evaluation.off_policy.evaluate",
    "fit_reward_model": "drpo_rl.evaluation.off_policy.evaluate",
    "off_policy_evaluate": "drpo_rl.evaluation.off_policy.evaluate",
    "OraclePolicy": "drpo_rl.evaluation.reference",
    "oracle_policy": "drpo_rl.evaluation.reference",
    "PatiencePlanner": "drpo_rl.evaluation.reference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'drpo_rl.evaluation' has no attribute {name!r}")

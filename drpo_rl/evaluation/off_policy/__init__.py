"""Off-policy evaluation (OPE): a policy's value estimated from logged interactions alone.

:func:`off_policy_evaluate` scores a policy on logs with exact behaviour propensities, with
the direct method, importance sampling and doubly robust estimators (horizon 1: DM, IPS,
SNIPS, DR, SNDR, Switch-DR, clipped IPS; sessions: DM and DR through fitted Q evaluation,
PDIS, weighted PDIS), each with a bootstrap or Student-t interval and weight diagnostics.
See ``docs/method.md`` (off-policy evaluation) for the definitions and assumptions.
"""

from drpo_rl.evaluation.off_policy.evaluate import (
    BANDIT_ESTIMATORS,
    DEFAULT_CLIP,
    ESTIMATORS,
    SESSION_ESTIMATORS,
    OffPolicyEstimate,
    fit_reward_model,
    off_policy_evaluate,
)
from drpo_rl.evaluation.off_policy.reward_model import ItemValueModel

__all__ = [
    "BANDIT_ESTIMATORS",
    "DEFAULT_CLIP",
    "ESTIMATORS",
    "SESSION_ESTIMATORS",
    "ItemValueModel",
    "OffPolicyEstimate",
    "fit_reward_model",
    "off_policy_evaluate",
]

"""Online evaluation of policies against simulated users, through TorchRL collectors.

Example:
    >>> from drpo_rl.evaluation import evaluate, oracle_policy
    >>> from envs import make_env
    >>> env = make_env("RecSimBanditDiscrete", num_envs=128, seed=0)
    >>> evaluate(oracle_policy(env), env, num_users=128)["hit_rate"]
    1.0
"""

from drpo_rl.evaluation.evaluate import evaluate
from drpo_rl.evaluation.metrics import OnlineMetrics
from drpo_rl.evaluation.reference import OraclePolicy, oracle_policy

__all__ = ["OnlineMetrics", "OraclePolicy", "evaluate", "oracle_policy"]

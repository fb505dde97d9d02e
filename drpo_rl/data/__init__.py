"""drpo_rl.data: offline logs (generation, behaviour policies, the dataset class, loaders)."""

from drpo_rl.data.behavior import (
    AGENT_IDS,
    AntiOraclePolicy,
    BehaviorAgent,
    BehaviorMixture,
    EpsilonOraclePolicy,
    ExpertPolicy,
    RandomPolicy,
    SuboptimalPolicy,
)
from drpo_rl.data.dataset import FORMAT_VERSION, OfflineLogs
from drpo_rl.data.generate import LOG_KEYS, generate_logs
from drpo_rl.data.scenarios import list_scenarios, scenario_weights

__all__ = [
    "AGENT_IDS",
    "FORMAT_VERSION",
    "LOG_KEYS",
    "AntiOraclePolicy",
    "BehaviorAgent",
    "BehaviorMixture",
    "EpsilonOraclePolicy",
    "ExpertPolicy",
    "OfflineLogs",
    "RandomPolicy",
    "SuboptimalPolicy",
    "generate_logs",
    "list_scenarios",
    "scenario_weights",
]

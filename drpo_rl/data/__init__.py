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
from drpo_rl.data.distributions import ItemDistribution, PointMass
from drpo_rl.data.generate import LOG_KEYS, generate_logs
from drpo_rl.data.layout import BEHAVIOR_AGENT_KEY, BEHAVIOR_LOG_PROB_KEY
from drpo_rl.data.loaders import (
    ParsedLogs,
    load_interactions,
    load_kuairand,
    load_kuairec,
    load_movielens,
    load_obd,
    parse_kuairand,
    parse_kuairec,
    parse_movielens,
    parse_obd,
)
from drpo_rl.data.scenarios import list_scenarios, scenario_weights

__all__ = [
    "AGENT_IDS",
    "BEHAVIOR_AGENT_KEY",
    "BEHAVIOR_LOG_PROB_KEY",
    "FORMAT_VERSION",
    "LOG_KEYS",
    "AntiOraclePolicy",
    "BehaviorAgent",
    "BehaviorMixture",
    "EpsilonOraclePolicy",
    "ExpertPolicy",
    "ItemDistribution",
    "OfflineLogs",
    "PointMass",
    "ParsedLogs",
    "RandomPolicy",
    "SuboptimalPolicy",
    "generate_logs",
    "list_scenarios",
    "load_interactions",
    "load_kuairand",
    "load_kuairec",
    "load_movielens",
    "load_obd",
    "parse_kuairand",
    "parse_kuairec",
    "parse_movielens",
    "parse_obd",
    "scenario_weights",
]

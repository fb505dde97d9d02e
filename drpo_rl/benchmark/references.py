"""Reference rows beside the learners: the oracle, the logging policy and the expert rows.

- ``oracle``: the best item for every user (:class:`~drpo_rl.evaluation.OraclePolicy`),
  the greedy one-step reference.
- ``planner``: for sessions, the patience-aware planner
  (:class:`~drpo_rl.evaluation.PatiencePlanner`), the session reference that the
  learners' session regret is measured against.
- ``behaviour``: the scenario's logging policy (the behaviour mixture that wrote the logs),
  evaluated online on the same simulated users as every learner.
- ``bc-expert``: BC trained on the logged rows of the expert agent alone, the training set
  of a perfect filter. :func:`expert_rows` is the only place that reads the logs'
  behaviour-agent id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported on use: the command line reads the names below
    from tensordict import TensorDictBase

ORACLE, PLANNER, BEHAVIOUR, BC_EXPERT = "oracle", "planner", "behaviour", "bc-expert"
# The reference rows, in the order the grid runs and the tables list them.
REFERENCES = (ORACLE, PLANNER, BEHAVIOUR, BC_EXPERT)
# Those of one-step worlds (the planner is a session reference).
ONE_STEP_REFERENCES = (ORACLE, BEHAVIOUR, BC_EXPERT)
# Reference rows without training: their policy is evaluated as it is.
UNTRAINED = (ORACLE, PLANNER, BEHAVIOUR)
# What the bc-expert row trains: the registry's BC.
BC_EXPERT_ALGORITHM = "bc"

# Seed offset of the behaviour policy's own sampling during evaluation.
BEHAVIOUR_SEED_OFFSET = 7_919


def behaviour_policy(env, scenario: str, seed: int):
    """The logging mixture of ``scenario`` for ``env``'s catalogue, sampling from ``seed``.

    Example:
        >>> from envs import make_env
        >>> policy = behaviour_policy(make_env("RecSimBandit"), "medium", 0)
        >>> sorted(agent.name for agent in policy.agents)
        ['expert', 'random', 'suboptimal']
    """
    import torch

    from drpo_rl.data import BehaviorMixture, scenario_weights

    generator = torch.Generator(device=env.device)
    generator.manual_seed(BEHAVIOUR_SEED_OFFSET + seed)
    return BehaviorMixture.from_weights(env, scenario_weights(scenario), generator=generator)


def trained_algorithm(row: str) -> str:
    """The registry algorithm a learner or reference row trains (``bc-expert`` trains BC).

    Example:
        >>> trained_algorithm("bc-expert"), trained_algorithm("drpo")
        ('bc', 'drpo')
    """
    return BC_EXPERT_ALGORITHM if row == BC_EXPERT else row


def expert_rows(rows: TensorDictBase) -> TensorDictBase:
    """The rows logged by the expert agent (the perfect-filter training set).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({"behavior_agent": torch.tensor([0, 2, 0, 1])}, [4])
        >>> expert_rows(rows).shape
        torch.Size([2])
    """
    from drpo_rl.data import AGENT_IDS, BEHAVIOR_AGENT_KEY

    agent = rows.get(BEHAVIOR_AGENT_KEY, None)
    if agent is None:
        raise ValueError(
            f"the bc-expert reference needs the logs' {BEHAVIOR_AGENT_KEY!r} entry, which is "
            "missing"
        )
    mask = agent.reshape(rows.shape) == AGENT_IDS["expert"]
    if not bool(mask.any()):
        raise ValueError(
            "the bc-expert reference found no expert rows in these logs (scenario without "
            "expert behaviour?)"
        )
    return rows[mask]

"""Reference rows beside the learners: the oracle, the logging policy and the expert rows.

- ``oracle``: the best item for every user (:class:`~drpo_rl.evaluation.OraclePolicy`).
- ``behaviour``: the scenario's logging policy (the behaviour mixture that wrote the logs),
  evaluated online on the same simulated users as every learner.
- ``bc-expert``: BC trained on the logged rows of the expert agent alone, the training set
  of a perfect filter. :func:`expert_rows` is the only place that reads the logs'
  behaviour-agent id.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

AGENT_KEY = "behavior_agent"
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
    from drpo_rl.data import BehaviorMixture, scenario_weights

    generator = torch.Generator(device=env.device)
    generator.manual_seed(BEHAVIOUR_SEED_OFFSET + seed)
    return BehaviorMixture.from_weights(env, scenario_weights(scenario), generator=generator)


def expert_rows(rows: TensorDictBase) -> TensorDictBase:
    """The rows logged by the expert agent (the perfect-filter training set).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({"behavior_agent": torch.tensor([0, 2, 0, 1])}, [4])
        >>> expert_rows(rows).shape
        torch.Size([2])
    """
    from drpo_rl.data import AGENT_IDS

    agent = rows.get(AGENT_KEY, None)
    if agent is None:
        raise ValueError(
            f"the bc-expert reference needs the logs' {AGENT_KEY!r} entry, which is missing"
        )
    mask = agent.reshape(rows.shape) == AGENT_IDS["expert"]
    if not bool(mask.any()):
        raise ValueError(
            "the bc-expert reference found no expert rows in these logs (scenario without "
            "expert behaviour?)"
        )
    return rows[mask]

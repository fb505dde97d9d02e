"""Behaviour policies that write offline logs: expert, suboptimal, random, ... and mixtures.

Every behaviour agent is a distribution over catalogue items for the env's current users
(:meth:`BehaviorAgent.distribution`, an
:class:`~drpo_rl.data.distributions.ItemDistribution`); the policy samples an
item from it and writes, like any TorchRL policy module:

- ``"action"``: the item id (int64 ``[B]``), or for embedding-action envs the item's
  embedding, plus optional Gaussian noise (float32 ``[B, d]``), as the env's action kind
  (``env.action_kind``) encodes it;
- ``"behavior_log_prob"``: float32 ``[B]``, the log-propensity of the logged action under
  the policy that produced it (for a :class:`BehaviorMixture`, the mixture's true propensity
  ``log sum_k w_k pi_k(a|s)``, not the acting agent's);
- ``"behavior_agent"``: int64 ``[B]``, the id (:data:`AGENT_IDS`) of the agent that acted.

Propensity of embedding actions: with ``action_noise == 0`` the action is exactly the chosen
item's embedding, which decodes back to that item, so ``behavior_log_prob`` is the log
probability of the item (a probability mass). With ``action_noise = s > 0`` the action
``a = e_i + s * eps`` has the density of a mixture of Gaussians over the catalogue, and
``behavior_log_prob`` is that log-density, ``log sum_i p(i|s) N(a; e_i, s^2 I)`` (in nats,
with respect to Lebesgue measure on R^d; it can exceed 0).

Agents stand for behaviour of known quality: they ask the env for privileged truth about
its current users (``env.oracle()``, ``env.rewards(items)``, ``env.reward_table(items)``,
in chunks of items; see :class:`envs.SimulatedUsersEnv`), which no learner reads. So an
agent acts on the users of the env it was made for (:meth:`BehaviorAgent.bind` moves it to
another env of the same world), as that env's collector steps it. Nothing of shape
``[users, items]`` is built: a step costs O(users x items x d) arithmetic at most (the
expert's softmax over the catalogue), in chunks of ``env.chunk_size`` items.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from drpo_rl.data.distributions import (
    EpsilonGreedy,
    ItemDistribution,
    Mixture,
    PointMass,
    Popularity,
    Softmax,
    Uniform,
)
from drpo_rl.data.layout import BEHAVIOR_AGENT_KEY, BEHAVIOR_LOG_PROB_KEY
from envs import chunks
from envs.common.checks import check_int

__all__ = [
    "AGENT_IDS",
    "AGENTS",
    "AntiOraclePolicy",
    "BehaviorAgent",
    "BehaviorMixture",
    "EpsilonOraclePolicy",
    "ExpertPolicy",
    "RandomPolicy",
    "SuboptimalPolicy",
    "make_agent",
]


class BehaviorAgent(TensorDictModuleBase):
    """A behaviour agent: an item distribution per user, sampled into a logged action.

    Subclasses define :meth:`distribution` and set ``name``/``agent_id``; this class
    samples from it and writes ``"action"``, ``"behavior_log_prob"`` and
    ``"behavior_agent"``.

    Args:
        env: the simulated-user env whose current users the agent serves (an
            :class:`envs.SimulatedUsersEnv`: its catalogue, action kind and privileged
            queries); the env's device is the policy's device.

    Keyword Args:
        action_noise (float): standard deviation of the Gaussian noise added to embedding
            actions (0 for none; must be 0 for item actions).
        generator (torch.Generator, optional): the source of randomness, on the env's
            device; a fresh randomly seeded one if omitted.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import BehaviorAgent
        >>> from drpo_rl.data.distributions import PointMass
        >>> class FirstItem(BehaviorAgent):  # always shows item 0
        ...     name, agent_id = "first_item", 9
        ...     def distribution(self):
        ...         return PointMass(self.env, torch.zeros(3, dtype=torch.long))
        >>> env = make_env("RecSimBanditDiscrete", num_envs=3, num_items=5, seed=0)
        >>> td = FirstItem.from_env(env)(env.reset())
        >>> td["action"].tolist(), td["behavior_log_prob"].tolist(), td["behavior_agent"].tolist()
        ([0, 0, 0], [0.0, 0.0, 0.0], [9, 9, 9])
    """

    name: str = ""
    agent_id: int = -1
    in_keys = ["observation"]
    out_keys = ["action", BEHAVIOR_LOG_PROB_KEY, BEHAVIOR_AGENT_KEY]

    def __init__(
        self,
        env: Any,
        *,
        action_noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not (
            isinstance(action_noise, (int, float))
            and math.isfinite(action_noise)
            and action_noise >= 0
        ):
            raise ValueError(f"action_noise: expected a finite number >= 0, got {action_noise!r}")
        if action_noise != 0 and env.action_kind.name != "embedding":
            raise ValueError(
                "action_noise: expected a number >= 0, and 0 for item actions, got "
                f"{action_noise!r} with action_type={env.config.action_type!r}"
            )
        self.bind(env)
        self.action_noise = float(action_noise)
        device = env.device
        if generator is None:
            generator = torch.Generator(device=device)
            generator.seed()
        if not _same_device(generator.device, device):
            raise ValueError(
                f"generator: expected a torch.Generator on {device} (the env's device), "
                f"got one on {generator.device}"
            )
        self.generator = generator

    @classmethod
    def from_env(cls, env: Any, **kwargs: Any) -> BehaviorAgent:
        """Builds the agent for ``env``."""
        return cls(env, **kwargs)

    def bind(self, env: Any) -> BehaviorAgent:
        """Serve the current users of ``env`` from now on (an env of the same world: same
        catalogue size and action kind); returns ``self``."""
        previous = self.__dict__.get("env")
        if previous is not None and (
            env.config.num_items != previous.config.num_items
            or env.action_kind is not previous.action_kind
        ):
            raise ValueError(
                f"env: expected an env with {previous.config.num_items} items and "
                f"{previous.config.action_type!r} actions, like the one this agent was made "
                f"for, got {env.config.num_items} items and {env.config.action_type!r}"
            )
        # Kept out of the module's children: the env is not part of the policy's state.
        self.__dict__["env"] = env
        return self

    @property
    def num_items(self) -> int:
        return self.env.config.num_items

    def distribution(self) -> ItemDistribution:
        """The agent's item distribution for the env's current users."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The agent's own settings, JSON-serialisable (recorded in the logs' metadata)."""
        return {}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        dist = self.distribution()
        item = dist.sample(_uniform(self.env.num_envs, self.generator, self.env.device))
        agent = torch.full_like(item, self.agent_id)
        return _emit(self, tensordict, item, agent, dist)


class ExpertPolicy(BehaviorAgent):
    """Near-oracle behaviour: softmax of the noiseless item rewards at a temperature.

    ``pi(i|s) ∝ exp(reward_i / temperature)``; ``temperature=0`` is the oracle
    (argmax, ties to the lowest id). Rewards lie in [0, 1], so 0.02 is nearly greedy and
    1 is nearly uniform.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import ExpertPolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=4, num_items=20, seed=0)
        >>> policy = ExpertPolicy.from_env(env, temperature=0.0)
        >>> td = policy(env.reset())
        >>> bool((td["action"] == env.oracle()["item"]).all())
        True
        >>> td["behavior_log_prob"], td["behavior_agent"]
        (tensor([0., 0., 0., 0.]), tensor([0, 0, 0, 0]))
    """

    name = "expert"
    agent_id = 0

    def __init__(self, env: Any, *, temperature: float = 0.02, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.temperature = _non_negative("temperature", temperature)

    def distribution(self) -> ItemDistribution:
        if self.temperature == 0.0:
            return PointMass(self.env, self.env.oracle()["item"])
        return Softmax(self.env, 1.0, self.temperature)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


class AntiOraclePolicy(BehaviorAgent):
    """Adversarial behaviour: the expert's rule on negated rewards (worst item at 0).

    Examples:
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import AntiOraclePolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=4, num_items=20, seed=0)
        >>> td = AntiOraclePolicy.from_env(env)(env.reset())
        >>> bool((td["action"] == env.reward_table().argmin(-1)).all())
        True
    """

    name = "anti_oracle"
    agent_id = 4

    def __init__(self, env: Any, *, temperature: float = 0.0, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.temperature = _non_negative("temperature", temperature)

    def distribution(self) -> ItemDistribution:
        if self.temperature == 0.0:
            env = self.env
            _, worst = chunks.argmax(
                lambda items: -env.reward_table(items), env.config.num_items, env.chunk_size
            )
            return PointMass(env, worst)
        return Softmax(self.env, -1.0, self.temperature)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


class EpsilonOraclePolicy(BehaviorAgent):
    """The oracle's item with probability ``1 - epsilon``, a uniform item otherwise.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import EpsilonOraclePolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=10, seed=0)
        >>> _ = env.reset()
        >>> dist = EpsilonOraclePolicy.from_env(env, epsilon=0.5).distribution()
        >>> sorted({round(p, 6) for p in dist.log_probs(slice(0, 10))[0].exp().tolist()})
        [0.05, 0.55]
    """

    name = "epsilon_oracle"
    agent_id = 3

    def __init__(self, env: Any, *, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        if not (isinstance(epsilon, (int, float)) and 0 <= epsilon <= 1):
            raise ValueError(f"epsilon: expected a number in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    def distribution(self) -> ItemDistribution:
        return EpsilonGreedy(self.env, self.env.oracle()["item"], self.epsilon)

    def options(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}


class RandomPolicy(BehaviorAgent):
    """Uniform over the catalogue.

    Examples:
        >>> import math
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import RandomPolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=3, num_items=8, seed=0)
        >>> td = RandomPolicy.from_env(env)(env.reset())
        >>> bool(((td["behavior_log_prob"] + math.log(8)).abs() < 1e-6).all())
        True
    """

    name = "random"
    agent_id = 2

    def distribution(self) -> ItemDistribution:
        return Uniform(self.env)


class SuboptimalPolicy(BehaviorAgent):
    """Popularity-driven behaviour: items drawn by their Zipfian popularity.

    ``pi(i|s) ∝ popularity[i]``, optionally restricted to a relevance shortlist: the
    ``shortlist`` items of highest noiseless reward for the user (a recommender that ranks
    relevant candidates by popularity). ``shortlist=None`` ignores the user entirely.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import SuboptimalPolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=10, seed=0)
        >>> _ = env.reset()
        >>> probs = SuboptimalPolicy.from_env(env).distribution().log_probs(slice(0, 10)).exp()
        >>> torch.allclose(probs[0], env.catalogue.popularity)
        True
        >>> dist = SuboptimalPolicy.from_env(env, shortlist=3).distribution()
        >>> (dist.log_probs(slice(0, 10)) > -float("inf")).sum(-1).tolist()
        [3, 3]
    """

    name = "suboptimal"
    agent_id = 1

    def __init__(self, env: Any, *, shortlist: int | None = None, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        check_int("shortlist", shortlist, optional=True)
        self.shortlist = None if shortlist is None else min(shortlist, self.num_items)

    def distribution(self) -> ItemDistribution:
        if self.shortlist is None:
            return Popularity(self.env, None)
        env = self.env
        _, top = chunks.topk(env.reward_table, env.config.num_items, self.shortlist, env.chunk_size)
        return Popularity(env, top)

    def options(self) -> dict[str, Any]:
        return {"shortlist": self.shortlist}


#: Behaviour agents by name; their ids are what ``"behavior_agent"`` records.
AGENTS: dict[str, type[BehaviorAgent]] = {
    cls.name: cls
    for cls in (ExpertPolicy, SuboptimalPolicy, RandomPolicy, EpsilonOraclePolicy, AntiOraclePolicy)
}
AGENT_IDS: dict[str, int] = {name: cls.agent_id for name, cls in AGENTS.items()}


def make_agent(name: str, env: Any, **kwargs: Any) -> BehaviorAgent:
    """The behaviour agent called ``name`` for ``env`` (unknown name -> ValueError)."""
    if name not in AGENTS:
        raise ValueError(f"unknown behaviour agent {name!r}; valid agents: {list(AGENTS)}")
    return AGENTS[name].from_env(env, **kwargs)


class BehaviorMixture(BehaviorAgent):
    """Picks one agent per interaction with probability ``weights[k]``; logs its true propensity.

    For each user, agent ``k`` is drawn with probability ``w_k``, then acts; the row
    records that agent's id in ``"behavior_agent"`` and the MIXTURE's propensity
    ``log sum_k w_k pi_k(a|s)`` in ``"behavior_log_prob"`` (what an off-policy learner must
    reweight by: it does not observe which agent acted). All agents must share the env
    and the action noise; the mixture samples with its own generator.

    Args:
        agents (sequence of BehaviorAgent): the components (distinct names).
        weights (sequence of float): their probabilities: >= 0, summing to 1.

    Keyword Args:
        generator (torch.Generator, optional): as in :class:`BehaviorAgent`.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import BehaviorMixture
        >>> env = make_env("RecSimBanditDiscrete", num_envs=1000, num_items=20, seed=0)
        >>> mix = BehaviorMixture.from_weights(env, {"expert": 0.2, "random": 0.8},
        ...                                    generator=torch.Generator().manual_seed(0))
        >>> td = mix(env.reset())
        >>> td["action"].shape, td["behavior_log_prob"].dtype, td["behavior_agent"].unique()
        (torch.Size([1000]), torch.float32, tensor([0, 2]))
        >>> 0.15 < float((td["behavior_agent"] == 0).float().mean()) < 0.25
        True
    """

    name = "mixture"

    def __init__(
        self,
        agents: Sequence[BehaviorAgent],
        weights: Sequence[float],
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        agents = list(agents)
        if not agents:
            raise ValueError("agents: expected at least one behaviour agent, got none")
        if len(weights) != len(agents):
            raise ValueError(f"weights: expected {len(agents)} numbers, got {len(weights)}")
        first = agents[0]
        for agent in agents:
            if not isinstance(agent, BehaviorAgent) or isinstance(agent, BehaviorMixture):
                raise ValueError(f"agents: expected BehaviorAgent components, got {agent!r}")
            if agent.env is not first.env or agent.action_noise != first.action_noise:
                raise ValueError(
                    "agents: every component must share the env and action_noise; "
                    f"{agent.name!r} differs from {first.name!r}"
                )
        names = [agent.name for agent in agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agents: expected distinct agents, got {names}")
        _check_weights(dict(zip(names, weights, strict=True)), known=None)
        super().__init__(first.env, action_noise=first.action_noise, generator=generator)
        self.agents = torch.nn.ModuleList(agents)
        # Python floats for the metadata (the float32 buffer would record 0.10000000149).
        self._weight_values = [float(w) for w in weights]
        device = first.env.device
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32, device=device))
        self.register_buffer(
            "agent_ids", torch.tensor([agent.agent_id for agent in agents], device=device)
        )

    @classmethod
    def from_weights(
        cls,
        env: Any,
        weights: Mapping[str, float],
        *,
        agent_options: Mapping[str, Mapping[str, Any]] | None = None,
        action_noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> BehaviorMixture:
        """The mixture ``{agent name: weight}`` for ``env``; zero-weight agents are left out.

        ``agent_options`` maps an agent name to its keyword arguments (e.g.
        ``{"expert": {"temperature": 0.1}}``).
        """
        weights = _check_weights(weights)
        agent_options = dict(agent_options or {})
        unknown = sorted(set(agent_options) - set(weights))
        if unknown:
            raise ValueError(
                f"agent_options: {unknown} are not agents of this mixture {sorted(weights)}"
            )
        agents, kept = [], []
        for name, weight in weights.items():
            if weight > 0:
                options = dict(agent_options.get(name, {}))
                agents.append(make_agent(name, env, action_noise=action_noise, **options))
                kept.append(weight)
        return cls(agents, kept, generator=generator)

    def bind(self, env: Any) -> BehaviorMixture:
        super().bind(env)
        for agent in self.__dict__.get("_modules", {}).get("agents", ()):
            agent.bind(env)
        return self

    def options(self) -> dict[str, Any]:
        return {
            agent.name: {"weight": w, **agent.options()}
            for agent, w in zip(self.agents, self._weight_values, strict=True)
        }

    def distribution(self) -> ItemDistribution:
        """The mixture's item distribution ``sum_k w_k pi_k``."""
        parts = [agent.distribution() for agent in self.agents]
        return Mixture(self.env, self.weights.log(), parts)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        b, device = self.env.num_envs, self.env.device
        dist = self.distribution()
        choice = torch.searchsorted(
            self.weights.cumsum(0),
            _uniform(b, self.generator, device) * self.weights.sum(),
            right=True,
        ).clamp_(max=len(self.agents) - 1)
        # One draw per user serves every component: the chosen one's sample is kept.
        uniform = _uniform(b, self.generator, device)
        candidates = torch.stack([part.sample(uniform) for part in dist.parts])  # [K, B]
        item = candidates.gather(0, choice.unsqueeze(0)).squeeze(0)
        return _emit(self, tensordict, item, self.agent_ids[choice], dist)


def _emit(
    policy: BehaviorAgent,
    tensordict: TensorDictBase,
    item: torch.Tensor,
    agent: torch.Tensor,
    dist: ItemDistribution,
) -> TensorDictBase:
    """Writes action, propensity and agent id for the chosen items; ``dist``: the policy's."""
    env = policy.env
    action, log_prob = env.action_kind.behaviour_action(
        item,
        dist.log_prob(item),
        env,
        noise=policy.action_noise,
        generator=policy.generator,
        log_probs=dist.log_probs,
    )
    tensordict.set("action", action)
    tensordict.set(BEHAVIOR_LOG_PROB_KEY, log_prob.to(torch.float32))
    tensordict.set(BEHAVIOR_AGENT_KEY, agent.to(torch.int64))
    return tensordict


def _uniform(num: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(num, generator=generator, device=device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Equal devices, where an index-less one ("cuda") stands for the current device."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (current if a.index is None else a.index) == (
            current if b.index is None else b.index
        )
    return True


def _non_negative(field: str, value: Any) -> float:
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        raise ValueError(f"{field}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _check_weights(
    weights: Mapping[str, float], known: Mapping[str, Any] | None = AGENTS
) -> dict[str, float]:
    """Validates ``{agent name: weight}``: finite weights >= 0 summing to 1, names in ``known``."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"weights: expected a non-empty {{agent: weight}} dict, got {weights!r}")
    unknown = [] if known is None else sorted(set(weights) - set(known))
    if unknown:
        raise ValueError(f"weights: unknown agents {unknown}; valid agents: {list(AGENTS)}")
    for name, weight in weights.items():
        if not (
            isinstance(weight, (int, float))
            and not isinstance(weight, bool)
            and math.isfinite(weight)
            and weight >= 0
        ):
            raise ValueError(f"weights[{name!r}]: expected a finite number >= 0, got {weight!r}")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(
            f"weights: expected weights summing to 1, got {dict(weights)} (sum {total})"
        )
    return {name: float(weight) for name, weight in weights.items()}

"""Behaviour policies that write offline logs: expert, suboptimal, random, ... and mixtures.

Every behaviour agent is a distribution over catalogue items for the env's current users
(:meth:`BehaviorAgent.distribution`, an :class:`ItemDistribution`); the policy samples an
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
    "ItemDistribution",
    "PointMass",
    "RandomPolicy",
    "SuboptimalPolicy",
    "make_agent",
]


class ItemDistribution:
    """A distribution over the catalogue for each of the env's current users.

    Subclasses give the log-probabilities of a chunk of items (:meth:`log_probs`) and of
    one item per user (:meth:`log_prob`); :meth:`sample` draws by inverse CDF over the
    chunks (one uniform per user, so the result does not depend on the chunk size) unless
    a subclass has a cheaper exact rule.

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data import ExpertPolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=3, num_items=1000, seed=0)
        >>> _ = env.reset()
        >>> dist = ExpertPolicy.from_env(env, temperature=0.05).distribution()
        >>> probs = torch.cat([dist.log_probs(part).exp() for part in env.item_chunks(128)], -1)
        >>> probs.shape, torch.allclose(probs.sum(-1), torch.ones(3))
        (torch.Size([3, 1000]), True)
        >>> best = env.oracle()["item"]
        >>> torch.allclose(dist.log_prob(best).exp(), probs.max(-1).values)  # the likeliest
        True
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    def log_probs(self, items: slice) -> torch.Tensor:
        """log pi(i|s) of the items ``items`` (a slice of ids) for every user: [B, n]."""
        raise NotImplementedError

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        """log pi(item|s) of one item per user, int64 [B]: [B]."""
        raise NotImplementedError

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        """Item ids int64 [B] from each user's uniform draw ``uniform`` [B] in [0, 1)."""
        return chunks.sample(
            self.log_probs, self.env.config.num_items, self.env.chunk_size, uniform
        )


class _Softmax(ItemDistribution):
    """pi(i|s) ∝ exp(sign * reward_i / temperature), temperature > 0."""

    def __init__(self, env: Any, sign: float, temperature: float) -> None:
        super().__init__(env)
        self.scale = sign / temperature
        # One pass over the catalogue: each chunk's mass, whose sum is the normaliser.
        by_chunk = chunks.logsumexp_by_chunk(
            lambda items: env.reward_table(items).mul_(self.scale),
            env.config.num_items,
            env.chunk_size,
        )
        self.normaliser = torch.logsumexp(by_chunk, dim=-1)
        self.chunk_log_mass = by_chunk - self.normaliser.unsqueeze(-1)

    def log_probs(self, items: slice, users: torch.Tensor | None = None) -> torch.Tensor:
        # In place: the table is a fresh [B, chunk] block, the largest tensor of the step.
        table = self.env.reward_table(items, users).mul_(self.scale)
        normaliser = self.normaliser if users is None else self.normaliser[users]
        return table.sub_(normaliser.unsqueeze(-1))

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return self.env.rewards(items) * self.scale - self.normaliser

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        env = self.env
        return chunks.sample_by_chunk(
            self.log_probs, self.chunk_log_mass, env.config.num_items, env.chunk_size, uniform
        )


class PointMass(ItemDistribution):
    """All mass on one item per user, ``best`` int64 [B] (e.g. the oracle's).

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=4)
        >>> dist = PointMass(env, torch.tensor([2, 0]))
        >>> dist.sample(torch.rand(2)).tolist(), dist.log_prob(torch.tensor([2, 1])).tolist()
        ([2, 0], [0.0, -inf])
    """

    def __init__(self, env: Any, best: torch.Tensor) -> None:
        super().__init__(env)
        self.best = best

    def log_probs(self, items: slice) -> torch.Tensor:
        ids = torch.arange(items.start, items.stop, device=self.best.device)
        hit = ids == self.best.unsqueeze(-1)
        return torch.where(hit, 0.0, -math.inf)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return torch.where(items == self.best, 0.0, -math.inf)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        return self.best


class _Uniform(ItemDistribution):
    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.num_items = env.config.num_items

    def log_probs(self, items: slice) -> torch.Tensor:
        shape = (self.env.num_envs, items.stop - items.start)
        return torch.full(shape, -math.log(self.num_items), device=self.env.device)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return torch.full(items.shape, -math.log(self.num_items), device=items.device)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        return (uniform * self.num_items).long().clamp_(max=self.num_items - 1)


class _EpsilonGreedy(ItemDistribution):
    """The point mass on ``best`` with probability 1 - epsilon, uniform otherwise."""

    def __init__(self, env: Any, best: torch.Tensor, epsilon: float) -> None:
        super().__init__(env)
        self.best, self.epsilon, self.num_items = best, epsilon, env.config.num_items

    def _log(self, hit: torch.Tensor) -> torch.Tensor:
        uniform = self.epsilon / self.num_items
        return torch.where(hit, 1.0 - self.epsilon + uniform, uniform).log()

    def log_probs(self, items: slice) -> torch.Tensor:
        ids = torch.arange(items.start, items.stop, device=self.best.device)
        return self._log(ids == self.best.unsqueeze(-1))

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return self._log(items == self.best)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        # u < 1 - epsilon: the best item; above, u rescaled to [0, 1) picks a uniform item
        # (which may be the best one too: its probability is 1 - epsilon + epsilon / N).
        greedy = uniform < 1.0 - self.epsilon
        rescaled = (uniform - (1.0 - self.epsilon)) / max(self.epsilon, 1e-30)
        anyone = (rescaled * self.num_items).long().clamp_(0, self.num_items - 1)
        return torch.where(greedy, self.best, anyone)


class _Popularity(ItemDistribution):
    """pi(i|s) ∝ popularity[i], over the whole catalogue or each user's ``shortlist``."""

    def __init__(self, env: Any, shortlist: torch.Tensor | None) -> None:
        super().__init__(env)
        self.popularity = env.catalogue.popularity
        self.shortlist = shortlist  # [B, k] item ids, or None
        if shortlist is None:
            self.cdf = env.catalogue.popularity_cdf
        else:
            self.kept = self.popularity[shortlist]  # [B, k]
            self.kept_total = self.kept.sum(-1)

    def log_probs(self, items: slice) -> torch.Tensor:
        part = self.popularity[items].log().expand(self.env.num_envs, -1)
        if self.shortlist is None:
            return part
        offset = self.shortlist - items.start
        inside = (offset >= 0) & (offset < part.shape[-1])
        member = torch.zeros(part.shape, dtype=torch.bool, device=part.device)
        member.scatter_(-1, offset.clamp(0, part.shape[-1] - 1), inside)
        logs = part - self.kept_total.log().unsqueeze(-1)
        return torch.where(member, logs, -math.inf)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        logs = self.popularity[items].log()
        if self.shortlist is None:
            return logs
        member = (self.shortlist == items.unsqueeze(-1)).any(-1)
        return torch.where(member, logs - self.kept_total.log(), -math.inf)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        if self.shortlist is None:
            target = (uniform * self.cdf[-1]).unsqueeze(-1)
            index = torch.searchsorted(self.cdf, target.squeeze(-1), right=True)
            return index.clamp_(max=self.cdf.shape[0] - 1)
        cdf = self.kept.cumsum(-1)
        target = uniform.unsqueeze(-1) * cdf[:, -1:]
        index = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        return self.shortlist.gather(-1, index).squeeze(-1)


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
        >>> from drpo_rl.data.behavior import BehaviorAgent, PointMass
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
        return _Softmax(self.env, 1.0, self.temperature)

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
        return _Softmax(self.env, -1.0, self.temperature)

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
        return _EpsilonGreedy(self.env, self.env.oracle()["item"], self.epsilon)

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
        return _Uniform(self.env)


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
            return _Popularity(self.env, None)
        env = self.env
        _, top = chunks.topk(env.reward_table, env.config.num_items, self.shortlist, env.chunk_size)
        return _Popularity(env, top)

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


class _MixtureDistribution(ItemDistribution):
    """sum_k w_k pi_k: the mixture's propensities, from its components'."""

    def __init__(self, env: Any, log_weights: torch.Tensor, parts: list[ItemDistribution]):
        super().__init__(env)
        self.log_weights, self.parts = log_weights, parts

    def _mix(self, logs: list[torch.Tensor]) -> torch.Tensor:
        shape = (-1,) + (1,) * logs[0].dim()
        return torch.logsumexp(self.log_weights.view(shape) + torch.stack(logs), dim=0)

    def log_probs(self, items: slice) -> torch.Tensor:
        return self._mix([part.log_probs(items) for part in self.parts])

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        return self._mix([part.log_prob(items) for part in self.parts])


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
        return _MixtureDistribution(self.env, self.weights.log(), parts)

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

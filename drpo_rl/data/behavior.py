"""Behaviour policies that write offline logs: expert, suboptimal, random, ... and mixtures.

Every behaviour agent is a distribution over catalogue items computed from the env's
tensordict (:meth:`BehaviorAgent.item_probs`, float32 ``[B, N]``); the policy samples an
item from it and writes, like any TorchRL policy module:

- ``"action"``: the item id (int64 ``[B]``), or for embedding-action envs the item's
  embedding, plus optional Gaussian noise (float32 ``[B, d]``);
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

Agents read the privileged ``"item_rewards"`` (noiseless reward of every item): they stand
for behaviour of known quality, and no learner reads what they read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

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

ACTION_TYPES = ("item", "embedding")


class BehaviorAgent(TensorDictModuleBase):
    """A behaviour agent: an item distribution per user, sampled into a logged action.

    Subclasses define :meth:`item_probs` and set ``name``/``agent_id``; this class samples
    from it and writes ``"action"``, ``"behavior_log_prob"`` and ``"behavior_agent"``.

    Args:
        catalogue: the env's catalogue (``env.catalogue``: ``.embeddings`` [N, d],
            ``.popularity`` [N]); its device is the policy's device.

    Keyword Args:
        action_type (str): ``"item"`` (int64 ids) or ``"embedding"`` (the item's
            embedding), as the env's ``config.action_type``.
        action_noise (float): standard deviation of the Gaussian noise added to embedding
            actions (0 for none; must be 0 for item actions).
        generator (torch.Generator, optional): the source of randomness, on the catalogue's
            device; a fresh randomly seeded one if omitted.

    Use :meth:`from_env` to take catalogue and action type from an env.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import BehaviorAgent
        >>> class FirstItem(BehaviorAgent):  # always shows item 0
        ...     name, agent_id = "first_item", 9
        ...     def item_probs(self, tensordict):
        ...         probs = torch.zeros_like(tensordict.get("item_rewards"))
        ...         probs[:, 0] = 1.0
        ...         return probs
        >>> env = make_env("RecSimBanditDiscrete", num_envs=3, num_items=5, seed=0)
        >>> td = FirstItem.from_env(env)(env.reset())
        >>> td["action"].tolist(), td["behavior_log_prob"].tolist(), td["behavior_agent"].tolist()
        ([0, 0, 0], [0.0, 0.0, 0.0], [9, 9, 9])
    """

    name: str = ""
    agent_id: int = -1
    in_keys = ["item_rewards"]
    out_keys = ["action", "behavior_log_prob", "behavior_agent"]

    def __init__(
        self,
        catalogue: Any,
        *,
        action_type: str = "item",
        action_noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if action_type not in ACTION_TYPES:
            raise ValueError(f"action_type: expected one of {ACTION_TYPES}, got {action_type!r}")
        if not (isinstance(action_noise, (int, float)) and math.isfinite(action_noise)):
            raise ValueError(f"action_noise: expected a finite number >= 0, got {action_noise!r}")
        if action_noise < 0 or (action_type == "item" and action_noise != 0):
            raise ValueError(
                "action_noise: expected a number >= 0, and 0 for item actions, got "
                f"{action_noise!r} with action_type={action_type!r}"
            )
        self.catalogue = catalogue
        self.action_type = action_type
        self.action_noise = float(action_noise)
        device = catalogue.embeddings.device
        if generator is None:
            generator = torch.Generator(device=device)
            generator.seed()
        if not _same_device(generator.device, device):
            raise ValueError(
                f"generator: expected a torch.Generator on {device} (the catalogue's device), "
                f"got one on {generator.device}"
            )
        self.generator = generator

    @classmethod
    def from_env(cls, env: Any, **kwargs: Any) -> BehaviorAgent:
        """Builds the agent for ``env`` (its catalogue and ``config.action_type``)."""
        return cls(env.catalogue, action_type=env.config.action_type, **kwargs)

    @property
    def num_items(self) -> int:
        return self.catalogue.embeddings.shape[0]

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Probability of showing each item to each user: float32 ``[B, N]``, rows sum to 1."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The agent's own settings, JSON-serialisable (recorded in the logs' metadata)."""
        return {}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        probs = self.item_probs(tensordict)
        item = _sample_categorical(probs, self.generator)
        agent = torch.full_like(item, self.agent_id)
        return _emit(self, tensordict, item, agent, probs)


class ExpertPolicy(BehaviorAgent):
    """Near-oracle behaviour: softmax of the noiseless item rewards at a temperature.

    ``pi(i|s) ∝ exp(item_rewards[i] / temperature)``; ``temperature=0`` is the oracle
    (argmax, ties to the lowest id). Rewards lie in [0, 1], so 0.02 is nearly greedy and
    1 is nearly uniform.

    Examples:
        >>> import torch
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import ExpertPolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=4, num_items=20, seed=0)
        >>> policy = ExpertPolicy.from_env(env, temperature=0.0)
        >>> td = policy(env.reset())
        >>> bool((td["action"] == td["item_rewards"].argmax(-1)).all())
        True
        >>> td["behavior_log_prob"], td["behavior_agent"]
        (tensor([0., 0., 0., 0.]), tensor([0, 0, 0, 0]))
    """

    name = "expert"
    agent_id = 0

    def __init__(self, catalogue: Any, *, temperature: float = 0.02, **kwargs: Any) -> None:
        super().__init__(catalogue, **kwargs)
        self.temperature = _non_negative("temperature", temperature)

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        return _softmax_or_argmax(tensordict.get("item_rewards"), self.temperature)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


class AntiOraclePolicy(BehaviorAgent):
    """Adversarial behaviour: the expert's rule on negated rewards (worst item at 0).

    Examples:
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import AntiOraclePolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=4, num_items=20, seed=0)
        >>> td = AntiOraclePolicy.from_env(env)(env.reset())
        >>> bool((td["action"] == td["item_rewards"].argmin(-1)).all())
        True
    """

    name = "anti_oracle"
    agent_id = 4

    def __init__(self, catalogue: Any, *, temperature: float = 0.0, **kwargs: Any) -> None:
        super().__init__(catalogue, **kwargs)
        self.temperature = _non_negative("temperature", temperature)

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        return _softmax_or_argmax(-tensordict.get("item_rewards"), self.temperature)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


class EpsilonOraclePolicy(BehaviorAgent):
    """The oracle's item with probability ``1 - epsilon``, a uniform item otherwise.

    Examples:
        >>> from envs import make_env
        >>> from drpo_rl.data.behavior import EpsilonOraclePolicy
        >>> env = make_env("RecSimBanditDiscrete", num_envs=2, num_items=10, seed=0)
        >>> probs = EpsilonOraclePolicy.from_env(env, epsilon=0.5).item_probs(env.reset())
        >>> sorted(set(probs[0].tolist()))
        [0.05000000074505806, 0.550000011920929]
    """

    name = "epsilon_oracle"
    agent_id = 3

    def __init__(self, catalogue: Any, *, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(catalogue, **kwargs)
        if not (isinstance(epsilon, (int, float)) and 0 <= epsilon <= 1):
            raise ValueError(f"epsilon: expected a number in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        greedy = _softmax_or_argmax(tensordict.get("item_rewards"), 0.0)
        return (1.0 - self.epsilon) * greedy + self.epsilon / self.num_items

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

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        rewards = tensordict.get("item_rewards")
        return torch.full_like(rewards, 1.0 / self.num_items)


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
        >>> probs = SuboptimalPolicy.from_env(env).item_probs(env.reset())
        >>> torch.allclose(probs[0], env.catalogue.popularity)
        True
        >>> probs = SuboptimalPolicy.from_env(env, shortlist=3).item_probs(env.reset())
        >>> (probs > 0).sum(-1).tolist()
        [3, 3]
    """

    name = "suboptimal"
    agent_id = 1

    def __init__(self, catalogue: Any, *, shortlist: int | None = None, **kwargs: Any) -> None:
        super().__init__(catalogue, **kwargs)
        if shortlist is not None and not (
            isinstance(shortlist, int) and not isinstance(shortlist, bool) and shortlist >= 1
        ):
            raise ValueError(f"shortlist: expected None or an integer >= 1, got {shortlist!r}")
        self.shortlist = None if shortlist is None else min(shortlist, self.num_items)

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        rewards = tensordict.get("item_rewards")
        popularity = self.catalogue.popularity.expand_as(rewards)
        if self.shortlist is None:
            return popularity.clone()
        top = rewards.topk(self.shortlist, dim=-1).indices
        kept = torch.zeros_like(popularity).scatter_(-1, top, popularity.gather(-1, top))
        return kept / kept.sum(-1, keepdim=True)

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
    reweight by: it does not observe which agent acted). All agents must share the
    catalogue and the action settings; the mixture samples with its own generator.

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
            if (
                agent.catalogue is not first.catalogue
                or agent.action_type != first.action_type
                or agent.action_noise != first.action_noise
            ):
                raise ValueError(
                    "agents: every component must share the catalogue, action_type and "
                    f"action_noise; {agent.name!r} differs from {first.name!r}"
                )
        names = [agent.name for agent in agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agents: expected distinct agents, got {names}")
        _check_weights(dict(zip(names, weights, strict=True)), known=None)
        super().__init__(
            first.catalogue,
            action_type=first.action_type,
            action_noise=first.action_noise,
            generator=generator,
        )
        self.agents = torch.nn.ModuleList(agents)
        # Python floats for the metadata (the float32 buffer would record 0.10000000149).
        self._weight_values = [float(w) for w in weights]
        device = first.catalogue.embeddings.device
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

    def options(self) -> dict[str, Any]:
        return {
            agent.name: {"weight": w, **agent.options()}
            for agent, w in zip(self.agents, self._weight_values, strict=True)
        }

    def item_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The mixture's item distribution ``sum_k w_k pi_k``: float32 ``[B, N]``."""
        return torch.einsum("k,kbn->bn", self.weights, self._component_probs(tensordict))

    def _component_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        return torch.stack([agent.item_probs(tensordict) for agent in self.agents])

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        probs = self._component_probs(tensordict)  # [K, B, N]
        batch = probs.shape[1]
        choice = _sample_categorical(self.weights.expand(batch, -1), self.generator)
        rows = torch.arange(batch, device=probs.device)
        item = _sample_categorical(probs[choice, rows], self.generator)
        mixture = torch.einsum("k,kbn->bn", self.weights, probs)
        return _emit(self, tensordict, item, self.agent_ids[choice], mixture)


def _emit(
    policy: BehaviorAgent,
    tensordict: TensorDictBase,
    item: torch.Tensor,
    agent: torch.Tensor,
    probs: torch.Tensor,
) -> TensorDictBase:
    """Writes action, propensity and agent id for the chosen items; ``probs``: the policy's."""
    if policy.action_type == "item":
        action = item
        log_prob = probs.gather(-1, item.unsqueeze(-1)).squeeze(-1).log()
    else:
        embeddings = policy.catalogue.embeddings
        action = embeddings[item]
        if policy.action_noise == 0.0:
            log_prob = probs.gather(-1, item.unsqueeze(-1)).squeeze(-1).log()
        else:
            noise = torch.randn(
                action.shape, generator=policy.generator, device=action.device, dtype=action.dtype
            )
            action = action + policy.action_noise * noise
            log_prob = _gaussian_mixture_log_density(action, embeddings, probs, policy.action_noise)
    tensordict.set("action", action)
    tensordict.set("behavior_log_prob", log_prob.to(torch.float32))
    tensordict.set("behavior_agent", agent.to(torch.int64))
    return tensordict


def _gaussian_mixture_log_density(
    action: torch.Tensor, means: torch.Tensor, weights: torch.Tensor, std: float
) -> torch.Tensor:
    """log sum_i weights[b, i] N(action[b]; means[i], std^2 I): [B]."""
    dim = action.shape[-1]
    # |a - e|^2 expanded, so that no [B, N, d] tensor is built.
    sq_dist = (
        action.pow(2).sum(-1, keepdim=True) - 2.0 * action @ means.T + means.pow(2).sum(-1)
    ).clamp_min(0.0)
    log_normal = -sq_dist / (2.0 * std * std) - 0.5 * dim * math.log(2.0 * math.pi * std * std)
    return torch.logsumexp(weights.log() + log_normal, dim=-1)


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


def _sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` [B, N] by inverse CDF: int64 [B].

    Several times faster than ``torch.multinomial`` on the CPU. ``u`` is drawn below each
    row's total, so rounding in the cumulative sum can never select a zero-probability
    index (``right=True`` skips the flat steps those leave in the CDF).
    """
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device)
    return torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1)


def _softmax_or_argmax(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0.0:
        best = scores.argmax(-1, keepdim=True)
        return torch.zeros_like(scores).scatter_(-1, best, 1.0)
    return torch.softmax(scores / temperature, dim=-1)


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

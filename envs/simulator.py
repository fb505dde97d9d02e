"""The one batched TorchRL core behind every simulated-user environment of the suite."""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from envs import dynamics as rules
from envs.catalogue import Catalogue
from envs.config import RecSimConfig
from envs.population import UserPopulation


class SimulatedUsersEnv(EnvBase):
    """Batched simulated users; `RecSimBandit` and `UserSession` are this core with a config.

    A stateful env: the users' state lives on `env.device` and is replaced (never modified in
    place) at each step. `_step` runs only batched torch operations; the one host
    synchronisation is the check that item ids are in range (and that embeddings are
    finite), which raises a `ValueError` naming what was expected.

    Subclasses set `config_class` and carry the user-facing documentation; the config's
    `dynamics()` decides between the bandit (one step, static users) and sessions. A
    subclass with its own items or users (e.g. fitted to data) overrides
    `_make_catalogue` and `_make_population`, which `__init__` calls once each.

    Example:
        >>> import torch
        >>> from envs import RecSimConfig, SimulatedUsersEnv
        >>> env = SimulatedUsersEnv(RecSimConfig(action_type="item"), num_envs=4, seed=0)
        >>> td = env.reset()
        >>> td["action"] = td["item_rewards"].argmax(-1)  # the oracle
        >>> out = env.step(td)["next"]
        >>> bool(torch.equal(out["latent_reward"][:, 0], td["item_rewards"].max(-1).values))
        True
    """

    config_class: type[RecSimConfig] = RecSimConfig

    def __init__(
        self,
        config: RecSimConfig | None = None,
        *,
        num_envs: int = 1,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        config = self.checked_config(config)
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs: expected an integer >= 1, got {num_envs!r}")
        super().__init__(device=torch.device(device), batch_size=torch.Size([num_envs]))
        self.config = config
        self.dynamics = config.dynamics()
        self.catalogue = self._make_catalogue(config)
        self.population = self._make_population(config, self.catalogue)
        self._check_world()
        self._generator = torch.Generator(device=self.device)
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)
        self._make_specs()
        # Users arrive at the first reset, so that seeding then resetting draws the same
        # users as constructing with that seed.
        self._state: TensorDict | None = None

    def _make_catalogue(self, config: RecSimConfig) -> Catalogue:
        """The items, on `self.device`; a subclass with its own items overrides this."""
        return Catalogue.from_config(config, self.device)

    def _make_population(self, config: RecSimConfig, catalogue: Catalogue) -> UserPopulation:
        """The users, on `self.device`; by default the catalogue's mixture."""
        return UserPopulation.from_catalogue(catalogue)

    def _check_world(self) -> None:
        """The specs come from the config: the items and users must match it."""
        n, d, name = self.config.num_items, self.config.embedding_dim, type(self).__name__
        items, users = self.catalogue.embeddings.shape, self.population.preferences.shape
        if items != (n, d):
            raise ValueError(
                f"{name}._make_catalogue: expected item embeddings of shape ({n}, {d}) "
                f"(config num_items, embedding_dim), got {tuple(items)}"
            )
        if users[1:] != (d,):
            raise ValueError(
                f"{name}._make_population: expected preferences of shape (M, {d}) (config "
                f"embedding_dim), got {tuple(users)}"
            )

    @classmethod
    def default_config(cls, **overrides: object) -> RecSimConfig:
        """This env's config with `overrides` applied (unknown field -> ValueError)."""
        return cls.config_class.from_overrides(**overrides)

    @classmethod
    def checked_config(cls, config: RecSimConfig | None) -> RecSimConfig:
        """`config`, or the default one when None; ValueError unless a `config_class`."""
        if config is None:
            return cls.default_config()
        if not isinstance(config, cls.config_class):
            raise ValueError(
                f"config: expected a {cls.config_class.__name__}, got {type(config).__name__}"
            )
        return config

    @property
    def observation_layout(self) -> dict[str, slice]:
        """Slices of "observation": "preference" (noisy u), and for sessions
        "history_items", "history_rewards", "step" (see `envs.dynamics.observe`)."""
        return rules.observation_layout(self.config.embedding_dim, self.dynamics)

    @property
    def num_envs(self) -> int:
        return self.batch_size[0]

    def _make_specs(self) -> None:
        b, n, d = self.num_envs, self.config.num_items, self.config.embedding_dim
        device = self.device
        if self.config.action_type == "embedding":
            self.action_spec = Unbounded(shape=(b, d), dtype=torch.float32, device=device)
        else:
            self.action_spec = Categorical(n, shape=(b,), dtype=torch.int64, device=device)
        obs_dim = max(part.stop for part in self.observation_layout.values())
        self.observation_spec = Composite(
            observation=Unbounded(shape=(b, obs_dim), dtype=torch.float32, device=device),
            item_rewards=Bounded(0.0, 1.0, shape=(b, n), dtype=torch.float32, device=device),
            latent_reward=Bounded(0.0, 1.0, shape=(b, 1), dtype=torch.float32, device=device),
            # -1 after a reset: no item shown yet.
            item=Bounded(-1, n - 1, shape=(b,), dtype=torch.int64, device=device),
            shape=(b,),
            device=device,
        )
        self.reward_spec = Bounded(0.0, 1.0, shape=(b, 1), dtype=torch.float32, device=device)
        self.done_spec = Composite(
            done=Categorical(2, shape=(b, 1), dtype=torch.bool, device=device),
            terminated=Categorical(2, shape=(b, 1), dtype=torch.bool, device=device),
            truncated=Categorical(2, shape=(b, 1), dtype=torch.bool, device=device),
            shape=(b,),
            device=device,
        )

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        fresh = rules.new_users(
            self.catalogue,
            self.population,
            self.config,
            self.dynamics,
            self.num_envs,
            self._generator,
        )
        mask = None if tensordict is None else tensordict.get("_reset", None)
        # TorchRL only calls a partial reset after its own `done.any()` host sync, so one
        # more check is free and spares a [B, N] merge when everyone leaves (the bandit).
        if mask is None or self._state is None or bool(mask.all()):
            self._state = fresh
        else:
            mask = mask.reshape(self.num_envs)
            self._state = fresh.apply(
                lambda new, old: torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old),
                self._state,
            )
        b = self.num_envs
        false = torch.zeros(b, 1, dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                "observation": rules.observe(self.catalogue, self._state, self.dynamics),
                "item_rewards": self._state["item_rewards"],
                "latent_reward": torch.zeros(b, 1, device=self.device),
                "item": torch.full((b,), -1, dtype=torch.int64, device=self.device),
                "done": false,
                "terminated": false.clone(),
                "truncated": false.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        item = self._decode(tensordict.get("action"))
        state, reward, latent, leaves = rules.consume(
            self.catalogue, self.config, self.dynamics, self._state, item, self._generator
        )
        self._state = state
        terminated = leaves.unsqueeze(-1)
        return TensorDict(
            {
                "observation": rules.observe(self.catalogue, state, self.dynamics),
                "item_rewards": state["item_rewards"],
                "latent_reward": latent.unsqueeze(-1),
                "item": item,
                "reward": reward.unsqueeze(-1),
                "done": terminated,
                "terminated": terminated.clone(),
                # The session length limit is part of the user's (observed) dynamics, so
                # reaching it terminates the episode; nothing truncates inside the env.
                "truncated": torch.zeros_like(terminated),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _decode(self, action: torch.Tensor) -> torch.Tensor:
        """Validate the action and turn it into item ids int64 [B]."""
        b, n, d = self.num_envs, self.config.num_items, self.config.embedding_dim
        if self.config.action_type == "embedding":
            if not isinstance(action, torch.Tensor) or not action.is_floating_point():
                raise ValueError(
                    f"action: expected a floating-point embedding tensor of shape ({b}, {d}), "
                    f"got {_describe(action)}"
                )
            if action.shape != (b, d):
                raise ValueError(
                    f"action: expected an embedding of shape ({b}, {d}), got {_describe(action)}"
                )
            action = action.to(device=self.device, dtype=torch.float32)
            if not torch.isfinite(action).all():
                raise ValueError("action: expected finite embedding values, got NaN or inf")
            return rules.decode_embedding(action, self.catalogue.unit_embeddings)
        if (
            not isinstance(action, torch.Tensor)
            or action.is_floating_point()
            or action.is_complex()
            or action.dtype == torch.bool
        ):
            raise ValueError(
                f"action: expected integer item ids (int64) of shape ({b},), got "
                f"{_describe(action)}"
            )
        if action.shape != (b,):
            raise ValueError(f"action: expected item ids of shape ({b},), got {_describe(action)}")
        action = action.to(device=self.device, dtype=torch.int64)
        if not ((action >= 0) & (action < n)).all():
            raise ValueError(
                f"action: expected item ids in [0, {n - 1}], got values from "
                f"{int(action.min())} to {int(action.max())}"
            )
        return action

    def latent_state(self) -> TensorDict:
        """The users' hidden state (preference u, fatigue, patience, ...), for analysis.

        Privileged, like "item_rewards": no policy should read it.
        """
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() first")
        return self._state.clone()


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"

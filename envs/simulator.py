"""The one batched TorchRL core behind every simulated-user environment of the suite."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from envs import actions, chunks
from envs import dynamics as rules
from envs.catalogue import Catalogue
from envs.common.checks import check_int
from envs.config import RecSimConfig
from envs.population import UserPopulation

#: What an env can add to its outputs on request (`privileged=`); none by default.
PRIVILEGED_KEYS = ("latent_reward", "oracle", "item_rewards")

#: The largest full reward table [users, items] (float32) an env hands out on request.
FULL_TABLE_LIMIT_BYTES = 2**30


class SimulatedUsersEnv(EnvBase):
    """Batched simulated users; `RecSimBandit` and `UserSession` are this core with a config.

    A stateful env: the users' state lives on `env.device` and is replaced (never modified in
    place) at each step. `_step` runs only batched torch operations; the one host
    synchronisation is the check that item ids are in range (and that embeddings are
    finite), which raises a `ValueError` naming what was expected. The action's kind
    (`env.action_kind`, from the config's `action_type`) decodes it into the item shown.

    Cost: a step touches the shown items only, O(users x d); an embedding action adds its
    exact decode, one matrix product per chunk of `chunk_size` items. Nothing of shape
    [users, items] is built unless asked for.

    Privileged truth (the best item for each user, the noiseless reward of any item) is
    for behaviour policies of known quality and for evaluation, never for a learner's
    input. It is asked of the env for its current users, in chunks of items:
    `env.oracle()`, `env.rewards(items)`, `env.reward_table(items)`. `privileged=` adds
    some of it to the env's outputs (and observation spec), for rollouts and collectors:
    "latent_reward" (noiseless reward of the item shown, [B, 1], 0 at reset), "oracle"
    ("oracle_item" [B] and "oracle_reward" [B, 1]: the best item for the state the
    policy faces) and "item_rewards" (the full [B, N] table, refused above
    `FULL_TABLE_LIMIT_BYTES`).

    Subclasses set `config_class` and carry the user-facing documentation; the config's
    `dynamics()` decides between the bandit (one step, static users) and sessions. A
    subclass with its own items or users (e.g. fitted to data) overrides
    `_make_catalogue` and `_make_population`, which `__init__` calls once each.

    Example:
        >>> import torch
        >>> from envs import RecSimConfig, SimulatedUsersEnv
        >>> env = SimulatedUsersEnv(RecSimConfig(action_type="item"), num_envs=4, seed=0,
        ...                         privileged=("latent_reward",))
        >>> td = env.reset()
        >>> best = env.oracle()
        >>> td["action"] = best["item"]
        >>> out = env.step(td)["next"]
        >>> bool(torch.equal(out["latent_reward"][:, 0], best["reward"]))
        True
        >>> sorted(env.observation_spec.keys())
        ['item', 'latent_reward', 'observation']
    """

    config_class: type[RecSimConfig] = RecSimConfig

    def __init__(
        self,
        config: RecSimConfig | None = None,
        *,
        num_envs: int = 1,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        privileged: Iterable[str] = (),
        chunk_size: int | None = None,
    ) -> None:
        config = self.checked_config(config)
        check_int("num_envs", num_envs)
        super().__init__(device=torch.device(device), batch_size=torch.Size([num_envs]))
        self.config = config
        self.dynamics = config.dynamics()
        self.action_kind = actions.kind(config.action_type)
        self.privileged = _checked_privileged(privileged, num_envs, config.num_items)
        #: Items per chunk of every catalogue-wide computation (decode, oracle, tables).
        self.chunk_size = (
            chunks.default_chunk_size(num_envs, config.num_items, self.device)
            if chunk_size is None
            else check_int("chunk_size", chunk_size)
        )
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
        self._users = _Users()

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
        b, n = self.num_envs, self.config.num_items
        device = self.device
        self.action_spec = self.action_kind.spec(self)
        obs_dim = max(part.stop for part in self.observation_layout.values())
        low, high = self._observation_bounds()
        observations = {
            "observation": Bounded(
                low.expand(b, obs_dim),
                high.expand(b, obs_dim),
                shape=(b, obs_dim),
                dtype=torch.float32,
                device=device,
            ),
            # -1 after a reset: no item shown yet.
            "item": Bounded(-1, n - 1, shape=(b,), dtype=torch.int64, device=device),
        }
        if "latent_reward" in self.privileged:
            observations["latent_reward"] = _unit_interval((b, 1), device)
        if "oracle" in self.privileged:
            observations["oracle_item"] = Bounded(
                0, n - 1, shape=(b,), dtype=torch.int64, device=device
            )
            observations["oracle_reward"] = _unit_interval((b, 1), device)
        if "item_rewards" in self.privileged:
            # Unbounded: a Bounded spec would store two more [B, N] tensors of bounds.
            observations["item_rewards"] = Unbounded(
                shape=(b, n), dtype=torch.float32, device=device
            )
        self.observation_spec = Composite(observations, shape=(b,), device=device)
        self.reward_spec = _unit_interval((b, 1), device)
        self.done_spec = Composite(
            done=Categorical(2, shape=(b, 1), dtype=torch.bool, device=device),
            terminated=Categorical(2, shape=(b, 1), dtype=torch.bool, device=device),
            truncated=Categorical(2, shape=(b, 1), dtype=torch.bool, device=device),
            shape=(b,),
            device=device,
        )

    def _observation_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension (low, high) of "observation" [obs_dim], finite where known: the
        preference is a unit vector plus the view's Gaussian noise (unbounded with noise),
        recent items are catalogue embeddings or zeros, their rewards and the step
        fraction lie in [0, 1]."""
        layout, d = self.observation_layout, self.config.embedding_dim
        obs_dim = max(part.stop for part in layout.values())
        low = torch.zeros(obs_dim, device=self.device)
        high = torch.ones(obs_dim, device=self.device)
        reach = 1.0 if self.config.observation_noise == 0.0 else float("inf")
        low[layout["preference"]], high[layout["preference"]] = -reach, reach
        if "history_items" in layout:
            embeddings = self.catalogue.embeddings
            k = (layout["history_items"].stop - layout["history_items"].start) // d
            low[layout["history_items"]] = embeddings.min(0).values.clamp(max=0.0).repeat(k)
            high[layout["history_items"]] = embeddings.max(0).values.clamp(min=0.0).repeat(k)
        return low, high

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)

    # The two moves of the simulation, shared by the TorchRL steps below and the lean
    # batch-of-one path of the Gymnasium face (which skips TorchRL's per-call machinery).

    def _arrive(self, mask: torch.Tensor | None = None) -> None:
        """New users arrive: all of them, or where `mask` [B] is True."""
        fresh = rules.new_users(
            self.catalogue,
            self.population,
            self.config,
            self.dynamics,
            self.num_envs,
            self._generator,
        )
        # TorchRL only calls a partial reset after its own `done.any()` host sync, so one
        # more check is free and spares a merge when everyone leaves (the bandit).
        if mask is None or self._users.state is None or bool(mask.all()):
            self._users.state = fresh
        else:
            self._users.state = {
                key: torch.where(
                    mask.view(-1, *([1] * (new.dim() - 1))), new, self._users.state[key]
                )
                for key, new in fresh.items()
            }
        self._users.oracle = None

    def _show(self, item: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Show `item` [B] to the current users: (reward, latent reward, terminated,
        truncated), all [B]."""
        if self._users.state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        self._users.state, reward, latent, terminated, truncated = rules.consume(
            self.catalogue, self.config, self.dynamics, self._users.state, item, self._generator
        )
        if not self.dynamics.static_users:
            self._users.oracle = None
        return reward, latent, terminated, truncated

    def _observation(self) -> torch.Tensor:
        return rules.observe(self.catalogue, self._users.state, self.dynamics)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        self._arrive(None if mask is None else mask.reshape(self.num_envs))
        b = self.num_envs
        false = torch.zeros(b, 1, dtype=torch.bool, device=self.device)
        out = {
            "observation": self._observation(),
            "item": torch.full((b,), -1, dtype=torch.int64, device=self.device),
            "done": false,
            "terminated": false.clone(),
            "truncated": false.clone(),
        }
        if "latent_reward" in self.privileged:
            out["latent_reward"] = torch.zeros(b, 1, device=self.device)
        return self._with_privileged(out)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._users.state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        item = self.action_kind.decode(tensordict.get("action"), self)
        reward, latent, terminated, truncated = self._show(item)
        terminated, truncated = terminated.unsqueeze(-1), truncated.unsqueeze(-1)
        out = {
            "observation": self._observation(),
            "item": item,
            "reward": reward.unsqueeze(-1),
            # Leaving terminates a session; its length cap truncates it (see consume).
            "done": terminated | truncated,
            "terminated": terminated,
            "truncated": truncated,
        }
        if "latent_reward" in self.privileged:
            out["latent_reward"] = latent.unsqueeze(-1)
        return self._with_privileged(out)

    def _with_privileged(self, out: dict[str, torch.Tensor]) -> TensorDictBase:
        if "oracle" in self.privileged:
            best = self.oracle()
            out["oracle_item"] = best["item"]
            out["oracle_reward"] = best["reward"].unsqueeze(-1)
        if "item_rewards" in self.privileged:
            out["item_rewards"] = self.reward_table()
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    # Privileged truth, on demand.

    def oracle(self, chunk_size: int | None = None) -> TensorDict:
        """Each current user's best item ("item", int64 [B]) and its noiseless reward
        ("reward", [B]): exact, over the catalogue in chunks of `chunk_size` items.

        Example:
            >>> from envs import make_env
            >>> env = make_env("RecSimBanditDiscrete", num_envs=3, seed=0, num_items=1000)
            >>> _ = env.reset()
            >>> best = env.oracle(chunk_size=64)
            >>> bool((best["item"] == env.reward_table().argmax(-1)).all())
            True
        """
        state = self._current_state()
        if chunk_size is None and self._users.oracle is not None:
            return self._users.oracle
        size = self.chunk_size if chunk_size is None else check_int("chunk_size", chunk_size)
        item, reward = rules.best_items(self.catalogue, self.config, self.dynamics, state, size)
        best = TensorDict({"item": item, "reward": reward}, batch_size=self.batch_size)
        if chunk_size is None:
            self._users.oracle = best  # until the users change
        return best

    def rewards(self, items: torch.Tensor) -> torch.Tensor:
        """Noiseless reward of `items` for each current user: item ids int64 [B] -> [B],
        or [B, k] -> [B, k] (k items per user). O(users x k x d).
        """
        state = self._current_state()
        items = torch.as_tensor(items, device=self.device)
        b, n = self.num_envs, self.config.num_items
        if items.dtype != torch.int64 or items.dim() not in (1, 2) or items.shape[0] != b:
            raise ValueError(
                f"items: expected int64 item ids of shape ({b},) or ({b}, k), got a "
                f"{items.dtype} tensor of shape {tuple(items.shape)}"
            )
        if items.numel() and not ((items >= 0) & (items < n)).all():
            raise ValueError(
                f"items: expected item ids in [0, {n - 1}], got values from "
                f"{int(items.min())} to {int(items.max())}"
            )
        return rules.latent_rewards(self.catalogue, self.config, self.dynamics, state, items)

    def reward_table(
        self, items: slice | None = None, users: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Noiseless reward of the items `items` (a slice of ids; None: all) for every
        current user, [B, n], or for the users `users` (int64 indices into the batch),
        [len(users), n]. Refused (ValueError) above `FULL_TABLE_LIMIT_BYTES`; iterate over
        `env.item_chunks()` for a whole large catalogue.
        """
        state = self._current_state()
        items = slice(None) if items is None else items
        if not isinstance(items, slice) or items.step not in (None, 1):
            raise ValueError(f"items: expected a slice of item ids (step 1), got {items!r}")
        start, stop, _ = items.indices(self.config.num_items)
        rows = self.num_envs
        if users is not None:
            state = {key: value[users] for key, value in state.items()}
            rows = len(users)
        _check_table_fits("items", rows, max(stop - start, 0))
        return rules.reward_table(
            self.catalogue, self.config, self.dynamics, state, slice(start, stop)
        )

    def item_chunks(self, chunk_size: int | None = None) -> Iterator[slice]:
        """Slices of at most `chunk_size` (default `env.chunk_size`) item ids covering the
        catalogue, for `reward_table`."""
        size = self.chunk_size if chunk_size is None else chunk_size
        return chunks.item_chunks(self.config.num_items, size)

    def _current_state(self) -> rules.State:
        if self._users.state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() first")
        return self._users.state

    def latent_state(self) -> TensorDict:
        """The users' hidden state (preference u, fatigue, patience, ...), for analysis.

        Privileged, like the oracle: no policy should read it.
        """
        state = self._current_state()
        return TensorDict({k: v.clone() for k, v in state.items()}, batch_size=self.batch_size)


class _Users:
    """The current users' state and their cached oracle (a plain object: setting an
    attribute of the env itself, an `nn.Module`, costs more than a one-user step)."""

    __slots__ = ("state", "oracle")

    def __init__(self) -> None:
        self.state: rules.State | None = None
        self.oracle: TensorDict | None = None


def _unit_interval(shape: tuple[int, ...], device: torch.device) -> Bounded:
    return Bounded(0.0, 1.0, shape=shape, dtype=torch.float32, device=device)


def _checked_privileged(privileged: Iterable[str], num_envs: int, num_items: int) -> tuple:
    if isinstance(privileged, str):
        privileged = (privileged,)
    keys = tuple(privileged)
    unknown = [key for key in keys if key not in PRIVILEGED_KEYS]
    if unknown:
        raise ValueError(
            f"privileged: expected keys among {list(PRIVILEGED_KEYS)}, got {list(keys)}"
        )
    if "item_rewards" in keys:
        _check_table_fits("privileged='item_rewards'", num_envs, num_items)
    return tuple(dict.fromkeys(keys))


def _check_table_fits(argument: str, num_users: int, num_items: int) -> None:
    size = 4 * num_users * num_items
    if size > FULL_TABLE_LIMIT_BYTES:
        raise ValueError(
            f"{argument}: a reward table of {num_users} users x {num_items} items (float32) "
            f"takes {size / 2**30:.1f} GiB, above the limit of "
            f"{FULL_TABLE_LIMIT_BYTES / 2**30:.1f} GiB (envs.simulator.FULL_TABLE_LIMIT_BYTES); "
            "ask env.oracle() or env.rewards(items), or iterate over env.item_chunks()"
        )

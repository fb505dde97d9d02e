"""Online evaluation of a policy against simulated users, through a TorchRL collector.

The policy acts deterministically (``ExplorationType.DETERMINISTIC``: a Gaussian actor plays
its mean, a categorical one its mode) in a batched environment of ``batch_size`` users; a
:class:`torchrl.collectors.Collector` rolls ``max_steps`` steps per chunk, resetting every
user at the start of each chunk, and the chunks are folded into streaming metrics
(:class:`~drpo_rl.evaluation.metrics.OnlineMetrics`) on the collector's device. Nothing
proportional to ``num_users`` is kept, so a million users is a loop of chunks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase, SerialEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm.auto import tqdm

from drpo_rl.evaluation.metrics import OnlineMetrics
from envs import EnvSpec
from envs.common.checks import check_int
from envs.devices import check_device
from envs.dynamics import observation_layout

#: What evaluate() asks of the envs it builds: the truth behind latent reward, regret and
#: hit rate (a chunked search over the catalogue per step, never a [users, items] table).
PRIVILEGED = ("latent_reward", "oracle")

# Rough upper bound on what one chunk of users may hold, per device type: every step of a
# chunk keeps the observations and a few numbers per user, so the chunk size follows from
# the observation size and horizon (the env bounds its own per-item work by its chunk size).
CHUNK_BYTES = {"cpu": 256 * 2**20, "cuda": 4 * 2**30}
MAX_CHUNK_USERS = {"cpu": 65_536, "cuda": 1_048_576}

# Attributes that hold an environment's maximum session length (the suite's envs expose it
# as ``env.dynamics.max_length``; ``config.max_length`` for their session config).
HORIZON_FIELDS = ("max_length", "max_steps", "horizon")


def _horizon(env: EnvBase) -> int | None:
    for owner in (getattr(env, "dynamics", None), getattr(env, "config", None)):
        for field in HORIZON_FIELDS:
            value = getattr(owner, field, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _num_items(env: EnvBase) -> int | None:
    catalogue = getattr(env, "catalogue", None)
    if catalogue is not None:
        return int(catalogue.embeddings.shape[0])
    action_space = getattr(env.full_action_spec["action"], "space", None)
    n = getattr(action_space, "n", None)
    return int(n) if n is not None else None


def _has_tensors(policy) -> bool:
    if not isinstance(policy, torch.nn.Module):
        return False
    return any(True for _ in policy.parameters()) or any(True for _ in policy.buffers())


def _embeddings(env: EnvBase) -> torch.Tensor | None:
    catalogue = getattr(env, "catalogue", None)
    return None if catalogue is None else catalogue.embeddings


def _default_chunk(num_users: int, obs_dim: int, steps: int, device) -> int:
    kind = torch.device(device).type
    per_user = steps * (obs_dim + 16) * 4 * 3
    cap = CHUNK_BYTES.get(kind, CHUNK_BYTES["cpu"]) // per_user
    cap = max(1, min(num_users, cap, MAX_CHUNK_USERS.get(kind, MAX_CHUNK_USERS["cpu"])))
    # Equal chunks: the last chunk is as full as the others, so (almost) no user is
    # simulated only to be discarded.
    return math.ceil(num_users / math.ceil(num_users / cap))


def evaluation_env(
    env: str | EnvSpec,
    num_users: int,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    batch_size: int | None = None,
    max_steps: int | None = None,
) -> EnvBase:
    """The env :func:`evaluate` builds for ``env`` (a name or an :class:`envs.EnvSpec`).

    ``batch_size`` users per chunk (default: as many of the ``num_users`` as fit a memory
    budget for ``max_steps`` steps, the session length by default), on ``device``, with the
    privileged outputs :data:`PRIVILEGED`. Build it once and pass it to :func:`evaluate`
    to score several policies on the same users without rebuilding it.

    Example:
        >>> env = evaluation_env("UserSession", 1000)
        >>> env.batch_size, sorted(env.privileged)
        (torch.Size([1000]), ['latent_reward', 'oracle'])
    """
    spec = env if isinstance(env, EnvSpec) else EnvSpec(env)
    if batch_size is None:
        dynamics = spec.config.dynamics()
        layout = observation_layout(spec.config.embedding_dim, dynamics)
        obs_dim = max(part.stop for part in layout.values())
        steps = max_steps or dynamics.max_length
        batch_size = _default_chunk(num_users, obs_dim, steps, check_device(device))
    return spec.make(num_envs=batch_size, device=device, seed=seed, privileged=PRIVILEGED)


def _bound_to(policy, env):
    """Binds a policy that reads privileged truth from its env (a behaviour agent: it has
    ``env`` and ``bind``) to ``env``; returns the env it had, or None for other policies."""
    bind = getattr(policy, "bind", None)
    previous = getattr(policy, "env", None)
    if bind is None or previous is None:
        return None
    bind(env)
    return previous


def evaluate(
    policy: Callable[[TensorDictBase], TensorDictBase],
    env: str | EnvSpec | EnvBase,
    *,
    num_users: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    batch_size: int | None = None,
    price: float = 5.0,
    max_steps: int | None = None,
    env_overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, float | int]:
    """Roll ``policy`` deterministically through simulated users and return online metrics.

    Args:
        policy: a TorchRL policy (e.g. a ``TensorDictModule``) reading the env's keys and
            writing ``"action"``.
        env: an environment name for :func:`envs.make_env` or an :class:`envs.EnvSpec`
            (built with ``batch_size`` users on ``device`` and the privileged outputs
            :data:`PRIVILEGED`), or any batched TorchRL env with batch size ``[B]`` and the
            keys of the env contract (``("next", "reward")``, ``("next", "done")``;
            optionally ``("next", "latent_reward")``, ``("next", "item")``,
            ``"oracle_reward"``). A given env is re-seeded with ``seed`` and used with its
            own batch size. A policy that reads privileged truth from its env (a behaviour
            agent) is bound to the evaluation env for the run, then back to its own.
        num_users: how many simulated users (one session each) to evaluate.
        device: where the env, the policy and the metrics live.
        seed: the evaluation env's seed; the same seed gives the same numbers.
        batch_size: users per chunk (default: as many as fit a memory budget).
        price: eCPM per unit of reward (the paper reports eCPM = 5 x reward).
        max_steps: steps rolled per user; default: the env config's session length
            (1 for the bandits). A session still running after it counts as truncated.
        env_overrides: config overrides of the env named by ``env`` (see
            :class:`envs.EnvSpec`).
        progress: show a progress bar over chunks.

    Returns:
        A dict of floats: ``num_users``, ``num_steps``, ``reward`` (mean observed reward
        per interaction) with ``reward_ci95`` (95% half-width), ``reward_ci_low``,
        ``reward_ci_high``, ``ecpm`` and ``ecpm_ci95``; where the env provides them,
        ``latent_reward`` (noiseless), ``regret`` and ``hit_rate`` (against the best item,
        ``"oracle_reward"``), ``coverage`` (share of the catalogue recommended at least
        once) and ``diversity`` (mean pairwise cosine distance of the recommended items'
        embeddings across all users); for multi-step sessions also ``return``,
        ``return_ci95``, ``length``, ``truncated_sessions`` (still running after
        ``max_steps``), ``leave_rate`` (share of users whose session ended by leaving,
        ``("next", "terminated")``, not by the length cap) and ``session_diversity`` (the
        same distance within each session, averaged over sessions of 2+ steps).

    Example:
        >>> from drpo_rl.evaluation import evaluate, oracle_policy
        >>> from envs import make_env
        >>> env = make_env("RecSimBanditDiscrete", num_envs=256, seed=0,
        ...                privileged=("latent_reward", "oracle"))
        >>> metrics = evaluate(oracle_policy(env), env, num_users=512)
        >>> metrics["hit_rate"], metrics["regret"] < 1e-6
        (1.0, True)
    """
    check_int("num_users", num_users)
    check_int("batch_size", batch_size, optional=True)
    check_int("max_steps", max_steps, optional=True)
    device = check_device(device)
    if isinstance(env, str):
        env = EnvSpec(env, env_overrides or {})
    elif env_overrides:
        raise ValueError(
            "env_overrides: only apply when env is a name, not an EnvSpec or an env instance"
        )
    if isinstance(env, EnvSpec):
        env = evaluation_env(
            env, num_users, device=device, seed=seed, batch_size=batch_size, max_steps=max_steps
        )
    if len(env.batch_size) != 1:
        raise ValueError(
            f"env: expected a one-dimensional batch size [users], got {tuple(env.batch_size)}"
        )
    return rollout_metrics(
        policy,
        env,
        num_users=num_users,
        device=device,
        seed=seed,
        price=price,
        max_steps=max_steps,
        progress=progress,
    ).result()


def collector_options(env: EnvBase, policy, steps: int) -> dict[str, Any]:
    """The keywords of the evaluation's collector besides sizes and device (one place for
    them: :func:`evaluate` and the distributed evaluation's workers use the same)."""
    return {
        # Every chunk starts fresh users. An env whose sessions last exactly one step is
        # already reset by the collector after that step, so resetting again would only
        # waste one env reset per chunk.
        "reset_at_each_iter": not (steps == 1 and _horizon(env) == 1),
        "exploration_type": ExplorationType.DETERMINISTIC,
        "track_traj_ids": False,
        # Preallocated output buffers cost a fake rollout (policy and env) at construction,
        # which a few-chunk evaluation would pay again each call; stacking steps is cheap.
        "use_buffers": False,
        # The policy is used as given: no transforms (e.g. InitTracker) appended to the env.
        "auto_register_policy_transforms": False,
        # A policy without parameters (an oracle, a heuristic) cannot be moved by the
        # collector; it is trusted to act on the env's device.
        "trust_policy": True if not _has_tensors(policy) else None,
    }


def evaluation_steps(env: EnvBase, max_steps: int | None) -> int:
    """Steps rolled per user: ``max_steps``, else the env's session length, else 1."""
    return max_steps or _horizon(env) or 1


def empty_metrics(env: EnvBase, steps: int, price: float) -> OnlineMetrics:
    """The accumulator of an evaluation of ``env`` (its catalogue, ``steps`` per user)."""
    return OnlineMetrics(
        num_items=_num_items(env), embeddings=_embeddings(env), price=price, multi_step=steps > 1
    )


def rollout_metrics(
    policy,
    env: EnvBase,
    *,
    num_users: int,
    device: torch.device,
    seed: int,
    price: float,
    max_steps: int | None,
    progress: bool = False,
) -> OnlineMetrics:
    """:func:`evaluate` on a built env, returning the accumulator (to merge several)."""
    steps = evaluation_steps(env, max_steps)
    env.set_seed(seed)
    own_env = _bound_to(policy, env)
    try:
        (metrics,) = _roll(policy, env, [env], num_users, steps, device, price, progress)
    finally:
        if own_env is not None:
            policy.bind(own_env)
    return metrics


class EnvStack:
    """Built envs of one batch size ``[users]`` side by side: one TorchRL ``SerialEnv`` of
    batch ``[len(envs), users]``, built once (building one checks every env's specs) and
    reused by :func:`evaluate_stacked`.

    Example:
        >>> stack = EnvStack([evaluation_env("UserSession", 10) for _ in range(3)])
        >>> stack.env.batch_size, len(stack.envs)
        (torch.Size([3, 10]), 3)
        >>> EnvStack([evaluation_env("UserSession", 10), evaluation_env("UserSession", 20)])
        Traceback (most recent call last):
        ...
        ValueError: envs: expected one one-dimensional batch size, got [(10,), (20,)]
    """

    def __init__(self, envs: Sequence[EnvBase]) -> None:
        sizes = sorted({tuple(env.batch_size) for env in envs})
        if len(sizes) != 1 or len(sizes[0]) != 1:
            raise ValueError(f"envs: expected one one-dimensional batch size, got {sizes}")
        self.envs = list(envs)
        self.env = SerialEnv(len(self.envs), [functools.partial(_same, e) for e in self.envs])


def _same(env: EnvBase) -> EnvBase:
    return env


def evaluate_stacked(
    policy: Callable[[TensorDictBase], TensorDictBase],
    envs: Sequence[EnvBase] | EnvStack,
    *,
    num_users: int,
    seeds: Sequence[int],
    device: str | torch.device = "cpu",
    price: float = 5.0,
    max_steps: int | None = None,
) -> list[dict[str, float | int]]:
    """:func:`evaluate` of several policies at once, in one batched rollout.

    ``envs[k]`` (built envs of one batch size, e.g. by :func:`evaluation_env`, or their
    :class:`EnvStack`) is re-seeded with ``seeds[k]`` and becomes slice ``k`` of one
    TorchRL ``SerialEnv`` (batch ``[K, users]``); ``policy`` acts on the whole
    ``[K, users]`` batch at once (e.g. the runs of a
    :class:`~drpo_rl.algorithms.stacked.StackedAlgorithm`, each on its slice). Returns the
    metrics of each slice: those :func:`evaluate` gives for that slice's policy on
    ``envs[k]`` with ``seeds[k]``.
    """
    check_int("num_users", num_users)
    check_int("max_steps", max_steps, optional=True)
    device = check_device(device)
    stack = envs if isinstance(envs, EnvStack) else EnvStack(envs)
    if len(stack.envs) != len(seeds):
        raise ValueError(
            f"envs, seeds: expected one seed per env, got {len(stack.envs)} envs and "
            f"{len(seeds)} seeds"
        )
    for env, seed in zip(stack.envs, seeds, strict=True):
        env.set_seed(seed)
    steps = evaluation_steps(stack.envs[0], max_steps)
    rolled = _roll(policy, stack.env, stack.envs, num_users, steps, device, price, False)
    return [part_metrics.result() for part_metrics in rolled]


def _roll(policy, env, parts, num_users, steps, device, price, progress) -> list[OnlineMetrics]:
    """Roll ``policy`` through ``env`` (one of ``parts``, or their ``SerialEnv``) in chunks
    of its users; the accumulated metrics of each part."""
    chunk = int(parts[0].batch_size[0])
    metrics = [empty_metrics(part, steps, price) for part in parts]
    num_chunks = math.ceil(num_users / chunk)
    frames = len(parts) * chunk * steps
    collector = Collector(
        env,
        policy,
        frames_per_batch=frames,
        total_frames=frames * num_chunks,
        device=device,
        **collector_options(parts[0], policy, steps),
    )
    remaining = num_users
    try:
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            bar = tqdm(
                collector, total=num_chunks, desc="evaluate", unit="chunk", disable=not progress
            )
            for batch in bar:
                batch = batch.reshape(len(parts), chunk, steps)
                for part, part_metrics in enumerate(metrics):
                    part_metrics.update(batch[part], num_users=min(remaining, chunk))
                remaining -= chunk
    finally:
        collector.shutdown(close_env=False)
    return metrics

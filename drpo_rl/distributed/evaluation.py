"""Online evaluation over many users, split across TorchRL's distributed collector workers.

The ``num_users`` users are cut into ``shards`` contiguous groups (:func:`shard_range`);
group ``s`` is a batched evaluation env of its own seed :func:`shard_seed` ``(seed, s)``,
rolled in chunks of the same size in every group, and folded into its own
:class:`~drpo_rl.evaluation.metrics.OnlineMetrics`. The groups' accumulators are then
merged in group order (:meth:`OnlineMetrics.merge`), so the means and intervals are the
same numbers whether the groups ran one after the other in this process (``workers=1``)
or at once in ``shards`` worker processes of a
:class:`torchrl.collectors.distributed.DistributedCollector` (``workers=shards``: gloo, one
env per worker, the policy's weights sent by TorchRL, the chunks gathered in step).

With ``shards=1`` the result is that of :func:`~drpo_rl.evaluation.evaluate` on the one
group's env. TorchRL's collector launches its workers itself (``launcher="mp"``: on this
machine; ``"submitit"`` for Slurm), on a free TCP port of this host unless one is given.
"""

from __future__ import annotations

import functools
import math
import socket
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchrl.collectors.distributed import DistributedCollector
from torchrl.envs.utils import ExplorationType, set_exploration_type

from drpo_rl.distributed.shards import shard_range, shard_seed
from drpo_rl.evaluation.metrics import OnlineMetrics
from drpo_rl.evaluation.online import (
    collector_options,
    empty_metrics,
    evaluation_env,
    evaluation_steps,
    rollout_metrics,
)
from envs import EnvSpec
from envs.common.checks import check_int
from envs.devices import check_device

__all__ = ["evaluate_sharded"]


def free_port() -> int:
    """A TCP port free on this host now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def _group_env(spec: EnvSpec, users: int, chunk: int, seed: int, device, max_steps):
    """Group ``s``'s env, seeded as :func:`rollout_metrics` seeds it (a worker builds it)."""
    env = evaluation_env(
        spec, users, device=device, seed=seed, batch_size=chunk, max_steps=max_steps
    )
    env.set_seed(seed)
    return env


def evaluate_sharded(
    policy: Callable,
    env: str | EnvSpec,
    *,
    num_users: int,
    shards: int,
    workers: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
    price: float = 5.0,
    max_steps: int | None = None,
    device: str | torch.device = "cpu",
    env_overrides: Mapping[str, Any] | None = None,
    tcp_port: int | None = None,
) -> dict[str, float | int]:
    """The online metrics of ``policy`` on ``num_users`` users in ``shards`` seeded groups.

    ``workers`` is 1 (the groups in turn, here) or ``shards`` (one distributed collector
    worker per group); both give the same numbers. ``batch_size`` users per chunk in every
    group (default: what :func:`~drpo_rl.evaluation.evaluation_env` picks for the largest
    group). The other arguments and the result are those of
    :func:`~drpo_rl.evaluation.evaluate`; ``policy`` must not read privileged state from
    an env of its own (a behaviour agent).
    """
    check_int("num_users", num_users)
    check_int("shards", shards, maximum=num_users)
    check_int("batch_size", batch_size, optional=True)
    if workers not in (1, shards):
        raise ValueError(f"workers: expected 1 or shards ({shards}), got {workers!r}")
    device = check_device(device)
    spec = env if isinstance(env, EnvSpec) else EnvSpec(env, env_overrides or {})
    groups = [shard_range(num_users, s, shards) for s in range(shards)]
    seeds = [shard_seed(seed, s) for s in range(shards)]
    largest = max(len(group) for group in groups)
    if batch_size is None:
        probe = evaluation_env(spec, largest, device=device, seed=seeds[0])
        batch_size = int(probe.batch_size[0])
    make = [
        functools.partial(_group_env, spec, len(g), batch_size, s, device, max_steps)
        for g, s in zip(groups, seeds, strict=True)
    ]
    if workers == 1:
        parts = [
            rollout_metrics(
                policy,
                build(),
                num_users=len(group),
                device=device,
                seed=group_seed,
                price=price,
                max_steps=max_steps,
            )
            for build, group, group_seed in zip(make, groups, seeds, strict=True)
        ]
    else:
        parts = _distributed_parts(policy, make, groups, batch_size, price, max_steps, tcp_port)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return merged.result()


def _distributed_parts(policy, make, groups, chunk, price, max_steps, tcp_port) -> list:
    """Each group's accumulator, its chunks rolled by its own collector worker."""
    if torch.distributed.is_initialized():
        raise RuntimeError(
            "evaluate_sharded(workers > 1): expected no torch.distributed process group in "
            "this process (TorchRL's DistributedCollector makes its own, with its workers)"
        )
    template = make[0]()
    steps = evaluation_steps(template, max_steps)
    options = collector_options(template, policy, steps)
    num_chunks = math.ceil(max(len(group) for group in groups) / chunk)
    frames = len(groups) * chunk * steps
    collector = DistributedCollector(
        make,
        policy,
        frames_per_batch=frames,
        total_frames=frames * num_chunks,
        launcher="mp",
        sync=True,
        backend="gloo",
        tcp_port=free_port() if tcp_port is None else tcp_port,
        reset_at_each_iter=options.pop("reset_at_each_iter"),
        exploration_type=options.pop("exploration_type"),
        collector_kwargs=options,
    )
    parts: list[OnlineMetrics] = [empty_metrics(template, steps, price) for _ in groups]
    remaining = [len(group) for group in groups]
    try:
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            for batch in collector:
                for index, part in enumerate(parts):
                    part.update(
                        batch[index].reshape(chunk, steps),
                        num_users=max(0, min(remaining[index], chunk)),
                    )
                    remaining[index] -= chunk
    finally:
        collector.shutdown()
    return parts

"""Log generation by several processes into one dataset: shards of rows, one commit.

The ``num_samples`` rows are cut into ``shards`` contiguous ranges (:func:`shard_rows`).
Shard ``s`` is exactly what :func:`~drpo_rl.data.generate_logs` writes for its number of
rows with the seed :func:`shard_seed` ``(seed, s)`` (its own users, rewards and behaviour
streams); the ranks of a ``torch.distributed`` group share the shards (shard ``s`` on rank
``s % world``) and write them in place, into the memory-mapped files of one staged dataset
that rank 0 created. Rank 0 commits it (one ``metadata.json``, one checksum per file) once
every rank has written its rows, so the result opens as one :class:`OfflineLogs`, the same
byte for byte whatever the number of processes, and a rank that dies leaves no dataset
that loads as complete (the others fail at the next collective, within the timeout).

``generate_logs`` itself, and its random streams, are unchanged: a sharded dataset is a
different (documented) dataset from the one-stream one of the same seed.

Launch on 4 processes of one machine (or ``--nnodes`` machines sharing a file system)::

    torchrun --nproc-per-node 4 -m drpo_rl.distributed.logs -- --env RecSimBanditDiscrete \\
        --scenario medium --num-samples 100000000 --shards 64 --seed 0 --path LOGS
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tensordict import TensorDict, TensorDictBase

from drpo_rl.data.behavior import BehaviorMixture
from drpo_rl.data.dataset import OfflineLogs
from drpo_rl.data.generate import (
    LOG_KEYS,
    check_same_request,
    collect,
    derived_seeds,
    make_collector,
    resolve_num_envs,
    to_json,
    versions,
)
from drpo_rl.data.scenarios import scenario_name, scenario_weights
from drpo_rl.data.staging import StagedDataset
from drpo_rl.distributed.collectives import active_group_size
from drpo_rl.distributed.shards import shard_rows, shard_seed
from envs import EnvSpec
from envs.common.checks import check_int
from envs.devices import check_device

__all__ = ["generate_sharded_logs"]


def _shard_batches(spec: EnvSpec, weights, rows: range, seed: int, options) -> Iterator:
    """The CPU batches of one shard, as ``generate_logs`` makes them for ``len(rows)``."""
    env_seed, behavior_seed = derived_seeds(seed)
    num_envs = resolve_num_envs(options["num_envs"], len(rows), session=False)
    env = spec.make(
        num_envs=num_envs, device=options["device"], seed=env_seed, privileged=("latent_reward",)
    )
    generator = torch.Generator(device=options["device"]).manual_seed(behavior_seed)
    policy = BehaviorMixture.from_weights(
        env,
        weights,
        agent_options=options["agent_options"],
        action_noise=options["action_noise"],
        generator=generator,
    )
    collector = make_collector(env, policy, len(rows))
    yield from collect(collector, len(rows), LOG_KEYS, session=False)


def _describe(spec: EnvSpec, scenario, weights, seed, num_samples, shards, options):
    """The request (compared on re-opening) and the metadata of a sharded dataset."""
    env = spec.make(num_envs=1, device="cpu")
    policy = BehaviorMixture.from_weights(
        env, weights, agent_options=options["agent_options"], action_noise=options["action_noise"]
    )
    request = to_json(
        {
            "env": {"name": type(env).__name__, "config": dataclasses.asdict(env.config)},
            "scenario": {"name": scenario_name(scenario), "weights": weights},
            "behavior": {
                "agents": policy.options(),
                "action_noise": float(options["action_noise"]),
            },
            "seed": seed,
            "num_samples": num_samples,
            "num_envs": options["num_envs"],
        }
    )
    metadata = {
        "kind": "drpo_rl.generated_logs",
        **request,
        "layout": "rows",
        "keys": [list(key) if isinstance(key, tuple) else key for key in LOG_KEYS],
        "agent_ids": {agent.name: agent.agent_id for agent in policy.agents},
        "shards": {
            "count": shards,
            "rows": [[part.start, part.stop] for part in shard_rows(num_samples, shards)],
            "seeds": "shard s: generate_logs(len(rows), seed=SeedSequence((seed, s)) >> 2)",
        },
        "device": str(options["device"]),
        "versions": versions(),
    }
    return request, metadata


def generate_sharded_logs(
    env_name: str | EnvSpec,
    scenario: str | Mapping[str, float],
    num_samples: int,
    *,
    path: str | os.PathLike,
    seed: int,
    shards: int,
    device: torch.device | str = "cpu",
    num_envs: int | None = None,
    agent_options: Mapping[str, Mapping[str, Any]] | None = None,
    action_noise: float = 0.0,
    **env_overrides: Any,
) -> OfflineLogs:
    """Write ``num_samples`` rows of ``scenario`` in ``shards`` shards at ``path``.

    Call it on every rank of the process group (or in a plain process: one rank). The
    arguments are those of :func:`~drpo_rl.data.generate_logs` (``num_envs`` per shard)
    plus ``shards``. Complete logs at ``path`` made with the same settings are opened
    instead; other settings raise ``ValueError``. Returns the dataset on every rank.
    Session envs are refused (``ValueError``): their ``[time, env]`` layout is not sharded.
    """
    check_int("num_samples", num_samples)
    check_int("shards", shards, maximum=num_samples)
    check_int("num_envs", num_envs, optional=True)
    weights = scenario_weights(scenario)
    spec = env_name if isinstance(env_name, EnvSpec) else EnvSpec(env_name, env_overrides)
    if spec.config.dynamics().max_length > 1:
        raise ValueError(
            f"env: sharded generation writes row logs; {spec.name} has sessions "
            f"({spec.config.dynamics().max_length} steps): use generate_logs"
        )
    options = {
        "device": check_device(device),
        "num_envs": num_envs,
        "agent_options": agent_options,
        "action_noise": action_noise,
    }
    request, metadata = _describe(spec, scenario, weights, seed, num_samples, shards, options)
    world = active_group_size()
    rank = dist.get_rank() if world > 1 else 0
    if shards < world:
        raise ValueError(f"shards: expected at least one per rank ({world}), got {shards}")
    if OfflineLogs.is_complete(path):
        stored = OfflineLogs(path).metadata
        check_same_request(path, stored, request)
        stored_shards = stored.get("shards", {}).get("count")
        if stored_shards != shards:
            raise ValueError(
                f"logs at {path} were written in {stored_shards} shard(s), not {shards} "
                "(other shards are other random streams); delete the folder or choose "
                "another path"
            )
        return OfflineLogs(path)
    rows = shard_rows(num_samples, shards)
    mine = [(rows[s], shard_seed(seed, s)) for s in range(rank, shards, world)]
    if rank == 0:
        with StagedDataset(path) as staged:
            storage = staged.make_storage(num_samples)
            announced = world == 1
            for part, part_seed in mine:
                cursor = part.start
                for batch in _shard_batches(spec, weights, part, part_seed, options):
                    storage.set(range(cursor, cursor + batch.shape[0]), batch)
                    cursor += batch.shape[0]
                    if not announced:
                        # The files exist once the first rows are in: the others may write.
                        dist.broadcast_object_list([str(staged.storage_dir)], src=0)
                        announced = True
            if world > 1:
                dist.barrier()  # every rank has written its rows (or the barrier fails)
            # TorchRL's storage counts the rows written through it; the other ranks wrote
            # theirs into the same files.
            storage._len = num_samples
            staged.commit(storage, metadata)
    else:
        announced = [None]
        dist.broadcast_object_list(announced, src=0)
        files = TensorDict.load_memmap(announced[0])
        for part, part_seed in mine:
            _write_shard(files, spec, weights, part, part_seed, options)
        dist.barrier()
    if world > 1:
        dist.barrier()  # rank 0 has committed
    return OfflineLogs(path)


def _write_shard(files: TensorDictBase, spec, weights, part: range, part_seed, options) -> None:
    cursor = part.start
    for batch in _shard_batches(spec, weights, part, part_seed, options):
        files[cursor : cursor + batch.shape[0]].update_(batch)
        cursor += batch.shape[0]


def main(argv: Sequence[str] | None = None) -> int:
    from drpo_rl.distributed.process_group import DEFAULT_TIMEOUT_SECONDS, init_from_env

    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m drpo_rl.distributed.logs --",
        description="Generate one dataset of logs in shards, with every torchrun rank.",
    )
    parser.add_argument("--env", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--num-samples", type=int, required=True)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    init_from_env("cpu", timeout_seconds=args.timeout)
    try:
        logs = generate_sharded_logs(
            args.env,
            args.scenario,
            args.num_samples,
            path=args.path,
            seed=args.seed,
            shards=args.shards,
        )
        if dist.get_rank() == 0:
            print(f"{args.path}: {len(logs)} rows in {args.shards} shards")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

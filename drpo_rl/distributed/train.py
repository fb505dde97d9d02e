"""The data-parallel learner: one algorithm trained by ``N`` ranks with DDP.

Launch (2 ranks on this machine; gloo on the CPU, NCCL with ``--device cuda``)::

    torchrun --nproc-per-node 2 -m drpo_rl.distributed.train -- --logs LOGS \\
        --algorithm drpo --steps 1000 --out RUN

(The ``--`` ends torchrun's own options: under Python 3.11 its parser reads ``--logs`` as
an ambiguous prefix of its ``--logs-specs`` otherwise.)

Every rank opens the memory-mapped logs (nothing is copied) and samples its own contiguous
shard of them (:func:`logs_shard`: rows, or whole users for session logs) with its own
random stream; the networks start equal (one seed, and DDP broadcasts rank 0's), DDP
averages the gradients, and DRPO's filter is per rank or global (``--filter-scope``, see
:class:`~drpo_rl.objectives.DRPOLoss`), with kappa the same on every rank after each step.
Rank 0 writes ``RUN/policy.pt``, ``RUN/record.json`` and, every ``--checkpoint-every``
steps, ``RUN/checkpoint.pt``; a run resumed from it must have the same number of ranks.

:func:`train_distributed` is the same from Python, in a process group already joined or
joined from ``torchrun``'s environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tensordict import TensorDictBase
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchrl.data import TensorDictReplayBuffer, TensorStorage

from drpo_rl.algorithms import Algorithm, build
from drpo_rl.benchmark.store import write_json_atomic
from drpo_rl.benchmark.training import learner_view
from drpo_rl.distributed.process_group import DEFAULT_TIMEOUT_SECONDS, Ranks, init_from_env
from drpo_rl.distributed.shards import shard_range
from drpo_rl.objectives import DRPOLoss
from drpo_rl.objectives.drpo import FILTER_SCOPES
from envs.common.checks import check_choice, check_int

__all__ = [
    "data_parallel",
    "logs_shard",
    "main",
    "train_distributed",
]

CHECKPOINT_FILE = "checkpoint.pt"
RECORD_FILE = "record.json"
POLICY_FILE = "policy.pt"


def logs_shard(logs: Any, rank: int, world: int) -> TensorDictBase:
    """This rank's part of the logs' memory-mapped storage, as a view (no copy).

    Row logs (``[rows]``) are split by rows; session logs (``[time, env]``) by users (env
    columns), so that every user's session stays on one rank.
    """
    stored = logs.storage._storage
    users = stored.shape[-1]
    part = shard_range(users, rank, world)
    if len(part) == 0:
        raise ValueError(
            f"logs: expected at least {world} {'rows' if stored.batch_dims == 1 else 'users'} "
            f"for {world} ranks, got {users}"
        )
    index = slice(part.start, part.stop)
    return stored[index] if stored.batch_dims == 1 else stored[:, index]


def _shard_buffer(
    shard: TensorDictBase, batch_size: int, generator: torch.Generator
) -> TensorDictReplayBuffer:
    # TensorStorage over the view: TorchRL samples the memory map in place.
    return TensorDictReplayBuffer(
        storage=TensorStorage(learner_view(shard), ndim=shard.batch_dims),
        batch_size=batch_size,
        generator=generator,
    )


class _Compute(nn.Module):
    """An algorithm's ``compute`` as a module owning its loss modules, for DDP to wrap."""

    def __init__(self, algorithm: Algorithm) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(algorithm.loss_modules)
        self._compute = algorithm.compute

    def forward(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        return self._compute(batch)


def data_parallel(algorithm: Algorithm, ranks: Ranks, *, filter_scope: str = "rank") -> Algorithm:
    """``algorithm`` with its ``compute`` run through DDP (gradients averaged over ranks).

    Its DRPO losses get ``filter_scope`` (``"rank"`` or ``"global"``). Rank 0's parameters
    and buffers are broadcast once, here; after that every rank's kappa follows the same
    updates (see :meth:`DRPOLoss.update`), so buffers are not broadcast at every step.
    """
    check_choice("filter_scope", filter_scope, FILTER_SCOPES)
    for module in algorithm.loss_modules.values():
        if isinstance(module, DRPOLoss):
            module.filter_scope = filter_scope
    algorithm.policy.to(ranks.device)  # as the one-process training loop moves it
    wrapped = DistributedDataParallel(
        _Compute(algorithm).to(ranks.device),
        device_ids=[ranks.device] if ranks.device.type == "cuda" else None,
        forward_sync_buffers=False,
    )
    return dataclasses.replace(algorithm, compute=wrapped)


def _env_spec_of(metadata: Mapping[str, Any]):
    from envs import EnvSpec

    env = metadata.get("env")
    if not isinstance(env, Mapping) or "name" not in env:
        raise ValueError(
            "logs: expected metadata.json with an 'env' entry {name, config} (written by "
            f"generate_logs), got {env!r}"
        )
    return EnvSpec(env["name"], env.get("config") or {})


def _checkpoint(algorithm: Algorithm, generator: torch.Generator, step: int, ranks: Ranks):
    """The training state, with every rank's sampling stream (gathered on all ranks)."""
    streams = [None] * ranks.world
    dist.all_gather_object(streams, generator.get_state())
    return {
        "world_size": ranks.world,
        "step": step,
        "losses": {k: m.state_dict() for k, m in algorithm.loss_modules.items()},
        "optimizer": algorithm.optimizer.state_dict(),
        "sampler_rngs": streams,
    }


def _restore(path: Path, algorithm: Algorithm, generator: torch.Generator, ranks: Ranks) -> int:
    state = torch.load(path, map_location=ranks.device, weights_only=False)
    if state["world_size"] != ranks.world:
        raise ValueError(
            f"{path}: written by a run of {state['world_size']} ranks, this run has "
            f"{ranks.world}; resume with --nproc-per-node (x --nnodes) giving "
            f"{state['world_size']} ranks, or use another --out"
        )
    for key, module in algorithm.loss_modules.items():
        module.load_state_dict(state["losses"][key])
    algorithm.optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["sampler_rngs"][ranks.rank])
    return int(state["step"])


def train_distributed(
    logs: str | os.PathLike,
    algorithm: str,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    lr: float | None = None,
    hparams: Mapping[str, Any] | None = None,
    filter_scope: str = "rank",
    out: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    device: str | torch.device = "cpu",
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    on_step: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, Any]:
    """Train ``algorithm`` on the logs at ``logs`` with every rank of the process group.

    ``batch_size`` rows per rank and step (the global batch is ``world`` times larger).
    Returns the record (also written to ``out/record.json`` by rank 0): the world size,
    the steps, the steps per second, the last step's loss terms (this rank's) and kappa.
    ``on_step(step, terms)`` is called on every rank after each step. A collective that
    fails (a rank died; nothing arrives within ``timeout_seconds``) raises RuntimeError
    naming this rank and step.
    """
    from drpo_rl.data import OfflineLogs
    from drpo_rl.models import PolicySpecs

    check_int("steps", steps)
    check_int("batch_size", batch_size)
    check_int("checkpoint_every", checkpoint_every, minimum=0)
    ranks = init_from_env(device, timeout_seconds=timeout_seconds)
    dataset = OfflineLogs(logs)
    # One sampling stream per rank, derived from the run's seed.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + ranks.rank)
    buffer = _shard_buffer(logs_shard(dataset, ranks.rank, ranks.world), batch_size, generator)
    torch.manual_seed(seed)
    specs = PolicySpecs.from_env(_env_spec_of(dataset.metadata).make(device=ranks.device))
    options = {**(hparams or {}), "batch_size": batch_size}
    if lr is not None:
        options["lr"] = lr
    algo = data_parallel(build(algorithm, specs, **options), ranks, filter_scope=filter_scope)
    out = None if out is None else Path(out)
    done = 0
    if out is not None and (out / CHECKPOINT_FILE).is_file():
        done = _restore(out / CHECKPOINT_FILE, algo, generator, ranks)
    started = time.perf_counter()
    terms: dict[str, torch.Tensor] = {}
    for step in range(done + 1, steps + 1):
        batch = buffer.sample().to(ranks.device)
        try:
            terms = algo.update(batch)
        except (RuntimeError, dist.DistBackendError) as err:
            raise RuntimeError(
                f"rank {ranks.rank} of {ranks.world}: a collective failed at step {step} "
                f"(another rank stopped, or none answered within {timeout_seconds:g} s): {err}"
            ) from err
        if on_step is not None:
            on_step(step, terms)
        if out is not None and checkpoint_every and step % checkpoint_every == 0 < steps - step:
            state = _checkpoint(algo, generator, step, ranks)
            if ranks.is_main:
                out.mkdir(parents=True, exist_ok=True)
                torch.save(state, out / CHECKPOINT_FILE)
    seconds = time.perf_counter() - started
    record = {
        "algorithm": algorithm,
        "world_size": ranks.world,
        "filter_scope": filter_scope,
        "steps": steps,
        "batch_size_per_rank": batch_size,
        "steps_per_second": (steps - done) / seconds if seconds > 0 else None,
        "terms": {k: float(v) for k, v in terms.items()},
    }
    if out is not None and ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(algo.policy.state_dict(), out / POLICY_FILE)
        write_json_atomic(out / RECORD_FILE, record)
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m drpo_rl.distributed.train`` (for a CLI that dispatches)."""
    parser.add_argument("--logs", type=Path, required=True, help="a dataset folder")
    parser.add_argument("--algorithm", required=True, help="a registry name, e.g. drpo")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=320, help="rows per rank and step")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filter-scope", choices=FILTER_SCOPES, default="rank")
    parser.add_argument("--out", type=Path, help="where rank 0 writes policy.pt, record.json")
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, 1 GPU/rank)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`train_distributed` with parsed :func:`add_arguments` options."""
    return train_distributed(
        args.logs,
        args.algorithm,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        filter_scope=args.filter_scope,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        timeout_seconds=args.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m drpo_rl.distributed.train --",
        description="Train one algorithm on offline logs with DDP over the torchrun ranks.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        record = run_from_args(args)
        if dist.get_rank() == 0:
            print(json.dumps(record))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

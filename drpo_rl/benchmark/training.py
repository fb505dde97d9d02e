"""One benchmark run's training loop: sample logged batches, step the algorithm, evaluate.

Read top to bottom: the rows a learner may see are copied into a replay buffer on the
training device (sampling then needs no host round trip), the registry builds the
algorithm, and ``steps`` updates run with a learning-curve evaluation every
``steps / curve_points`` updates and a final one. Everything random draws from the run's
seed: the models' initialisation (``torch.manual_seed``) and the batches (the buffer's own
generator), so a run re-done after an interruption gives the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

# What a learner may read from the logs. The behaviour agent's id and the privileged
# rewards are there for analysis and the reference rows only.
LEARNER_KEYS = (
    "observation",
    "action",
    "behavior_log_prob",
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "observation"),
)


def learner_view(rows: TensorDictBase) -> TensorDictBase:
    """The entries of ``rows`` a learner may read (see :data:`LEARNER_KEYS`).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rows = TensorDict(
        ...     {"observation": torch.zeros(2, 3), "behavior_agent": torch.zeros(2)}, [2]
        ... )
        >>> sorted(learner_view(rows).keys())
        ['observation']
    """
    present = set(rows.keys(True, True))
    return rows.select(*[k for k in LEARNER_KEYS if k in present])


def replay_buffer(
    rows: TensorDictBase, *, batch_size: int, device: torch.device, seed: int
) -> TensorDictReplayBuffer:
    """An in-memory buffer of ``rows`` on ``device`` sampling with its own seeded generator.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({"observation": torch.arange(10.0).unsqueeze(-1)}, [10])
        >>> buffer = replay_buffer(rows, batch_size=4, device=torch.device("cpu"), seed=0)
        >>> buffer.sample().shape
        torch.Size([4])
    """
    if rows.numel() == 0:
        raise ValueError("cannot train on an empty set of logged rows")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(rows.numel(), device=device),
        batch_size=batch_size,
        generator=generator,
    )
    buffer.extend(rows.reshape(-1).to(device))
    return buffer


def curve_steps(steps: int, points: int) -> list[int]:
    """The update counts after which the learning curve is evaluated (the last is ``steps``).

    Example:
        >>> curve_steps(300, 3)
        [100, 200, 300]
        >>> curve_steps(5, 0)
        [5]
    """
    points = max(1, min(points, steps))
    return sorted({round(steps * (i + 1) / points) for i in range(points)})


def train(
    algorithm: str,
    rows: TensorDictBase,
    specs: Any,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    hparams: dict[str, Any],
    curve_points: int,
    evaluate_policy: Callable[[Any, bool], dict[str, float]],
    monitor: Callable[[Any, TensorDictBase], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Train ``algorithm`` on ``rows`` and evaluate it.

    Returns the run's record fields and, under ``"policy"``, the trained policy module.

    ``evaluate_policy(policy, final)`` evaluates online (``final`` picks the final,
    larger evaluation); ``monitor(algo, batch)`` (optional) records diagnostics of the
    last training batch at every learning-curve point.
    """
    from drpo_rl.algorithms import build

    torch.manual_seed(seed)
    buffer = replay_buffer(learner_view(rows), batch_size=batch_size, device=device, seed=seed)
    algo = build(algorithm, specs, lr=lr, batch_size=batch_size, **hparams)
    algo.policy.to(device)
    for module in algo.loss_modules.values():
        module.to(device)

    checkpoints = curve_steps(steps, curve_points)
    curve: list[dict[str, float]] = []
    monitored: list[dict[str, float]] = []
    train_seconds = eval_seconds = 0.0
    start = time.perf_counter()
    done = 0
    for checkpoint in checkpoints:
        terms: dict[str, torch.Tensor] = {}
        for _ in range(checkpoint - done):
            batch = buffer.sample()
            terms = algo.update(batch)
        done = checkpoint
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        point = {"step": checkpoint, **{k: float(v) for k, v in terms.items()}}
        if monitor is not None:
            # The last training batch: monitoring draws nothing from the run's streams.
            monitored.append({"step": checkpoint, **monitor(algo, batch)})
        if checkpoint != steps:
            point.update(_curve_metrics(evaluate_policy(algo.policy, False)))
        else:
            final = evaluate_policy(algo.policy, True)
            point.update(_curve_metrics(final))
        curve.append(point)
        eval_seconds += time.perf_counter() - start
        start = time.perf_counter()
    return {
        "metrics": final,
        "curve": curve,
        "monitor": monitored,
        "hparams": {k: _jsonable(v) for k, v in algo.hparams.items()},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "train_rows": int(rows.numel()),
        "policy": algo.policy,
    }


def _curve_metrics(metrics: dict[str, float]) -> dict[str, float]:
    keep = ("reward", "latent_reward", "regret", "hit_rate")
    return {f"eval_{k}": metrics[k] for k in keep if k in metrics}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)

"""One benchmark run's training loop: sample logged batches, step the algorithm, evaluate.

Read top to bottom: the rows a learner may see are copied into a replay buffer on the
training device (sampling then needs no host round trip), the registry builds the
algorithm, and ``steps`` updates run with a learning-curve evaluation every
``steps / curve_points`` updates and a final one. Everything random draws from the run's
seed: the models' initialisation (``torch.manual_seed``) and the batches (the buffer's own
generator), so a run re-done after an interruption gives the same numbers.

At each learning-curve point but the last, the whole training state (every loss module's
``state_dict``, which holds the actor, critics, target networks and DRPO's kappa; the
optimiser; the sampler's and torch's random states; the curve so far) can be handed to an
``on_checkpoint`` callback as tensors and plain containers. ``train(..., resume=state)``
continues from such a state and ends with exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from drpo_rl.data.layout import BEHAVIOR_LOG_PROB_KEY, RETURN_TO_GO_KEY

# What a learner may read from the logs. The behaviour agent's id and the privileged
# rewards are there for analysis and the reference rows only.
LEARNER_KEYS = (
    "observation",
    "action",
    BEHAVIOR_LOG_PROB_KEY,
    RETURN_TO_GO_KEY,
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
    rows: TensorDictBase, *, batch_size: int, generator: torch.Generator
) -> TensorDictReplayBuffer:
    """An in-memory buffer of ``rows`` on ``generator``'s device, sampling with ``generator``.

    The caller keeps ``generator`` so that it can save and restore the sampling stream.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({"observation": torch.arange(10.0).unsqueeze(-1)}, [10])
        >>> generator = torch.Generator().manual_seed(0)
        >>> buffer = replay_buffer(rows, batch_size=4, generator=generator)
        >>> buffer.sample().shape
        torch.Size([4])
    """
    if rows.numel() == 0:
        raise ValueError("cannot train on an empty set of logged rows")
    device = generator.device
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


def prepare(
    algorithm: str,
    rows: TensorDictBase,
    specs: Any,
    *,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    hparams: dict[str, Any],
) -> tuple[Any, torch.Generator, TensorDictReplayBuffer]:
    """A run's algorithm on ``device``, its sampling generator and its buffer of ``rows``.

    Seeded as :func:`train` seeds them, so that a run prepared here (e.g. one of a stack
    trained by :mod:`drpo_rl.benchmark.stacked`) starts exactly as the run alone.
    """
    from drpo_rl.algorithms import build
    from drpo_rl.algorithms.registry import check_logged_keys

    check_logged_keys(algorithm, hparams, set(rows.keys(True, True)))
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    buffer = replay_buffer(learner_view(rows), batch_size=batch_size, generator=generator)
    algo = build(algorithm, specs, lr=lr, batch_size=batch_size, **hparams)
    algo.policy.to(device)
    for module in algo.loss_modules.values():
        module.to(device)
    return algo, generator, buffer


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
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    on_point: Callable[[dict[str, float], dict[str, float]], bool] | None = None,
) -> dict[str, Any]:
    """Train ``algorithm`` on ``rows`` and evaluate it.

    Returns the run's record fields and, under ``"policy"``, the trained policy module.

    ``evaluate_policy(policy, final)`` evaluates online (``final`` picks the final,
    larger evaluation); ``monitor(algo, batch)`` (optional) records diagnostics of the
    last training batch at every learning-curve point. ``on_checkpoint(state)`` (optional)
    receives the training state at every learning-curve point but the last; ``resume``
    is such a state, made by a run with the same arguments, to continue from. A state
    that does not fit the algorithm built here raises ``ValueError``. ``on_point(point,
    metrics)`` (optional) sees each learning-curve point and its evaluation as they come;
    returning True stops training there (early stopping), that evaluation being the final.
    """
    algo, generator, buffer = prepare(
        algorithm,
        rows,
        specs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        hparams=hparams,
    )
    run = RunProgress(
        algo,
        generator,
        device,
        steps=steps,
        curve_points=curve_points,
        evaluate_policy=evaluate_policy,
        monitor=monitor,
        on_checkpoint=on_checkpoint,
        resume=resume,
        on_point=on_point,
    )
    start = time.perf_counter()
    for checkpoint in run.checkpoints:
        if checkpoint <= run.done:
            continue
        terms: dict[str, torch.Tensor] = {}
        for _ in range(checkpoint - run.done):
            batch = buffer.sample()
            terms = algo.update(batch)
        if run.reach(checkpoint, terms, batch, time.perf_counter() - start):
            break
        start = time.perf_counter()
    return run.result(int(rows.numel()))


class RunProgress:
    """One run's progress through its learning-curve points, whoever does the updates.

    :func:`train` (one run) and :mod:`drpo_rl.benchmark.stacked` (many runs as one batched
    model) both step the run's algorithm up to each point of :attr:`checkpoints` and then
    call :meth:`reach`, which records the curve point (the step's terms, the monitor's
    diagnostics of the last batch, an evaluation) and hands a checkpoint to
    ``on_checkpoint``; :meth:`result` is the run's record fields. ``resume`` (a state
    ``on_checkpoint`` received) is loaded into ``algo`` and ``generator`` here;
    :attr:`done` is then its step.

    Example:
        >>> import torch
        >>> from drpo_rl.algorithms import build
        >>> from drpo_rl.models import PolicySpecs
        >>> algo = build("bc", PolicySpecs(obs_dim=3, action_dim=2), num_cells=8)
        >>> saved = []
        >>> run = RunProgress(
        ...     algo, torch.Generator(), torch.device("cpu"), steps=4, curve_points=2,
        ...     evaluate_policy=lambda policy, final: {"reward": 0.9 if final else 0.5},
        ...     on_checkpoint=saved.append)
        >>> run.checkpoints
        [2, 4]
        >>> run.reach(2, {"loss_bc": torch.tensor(1.5)}, None, train_seconds=0.1)  # not the end
        False
        >>> [state["step"] for state in saved]  # a checkpoint at each point but the last
        [2]
        >>> run.reach(4, {"loss_bc": torch.tensor(1.0)}, None, train_seconds=0.1)
        True
        >>> [(p["step"], p["loss_bc"], p["eval_reward"]) for p in run.result(100)["curve"]]
        [(2, 1.5, 0.5), (4, 1.0, 0.9)]
    """

    def __init__(
        self,
        algo: Any,
        generator: torch.Generator,
        device: torch.device,
        *,
        steps: int,
        curve_points: int,
        evaluate_policy: Callable[[Any, bool], dict[str, float]],
        monitor: Callable[[Any, TensorDictBase], dict[str, float]] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        resume: dict[str, Any] | None = None,
        on_point: Callable[[dict[str, float], dict[str, float]], bool] | None = None,
    ) -> None:
        self.algo, self.generator, self.device = algo, generator, device
        self.on_point = on_point
        self.steps = steps
        self.checkpoints = curve_steps(steps, curve_points)
        self.evaluate_policy, self.monitor, self.on_checkpoint = (
            evaluate_policy,
            monitor,
            on_checkpoint,
        )
        self.curve: list[dict[str, float]] = []
        self.monitored: list[dict[str, float]] = []
        self.train_seconds = self.eval_seconds = 0.0
        self.done = 0
        self.final: dict[str, float] = {}
        if resume is not None:
            resumable = self.checkpoints[:-1]
            self.done = restore_state(resume, algo, generator, device, resumable=resumable)
            self.curve, self.monitored = list(resume["curve"]), list(resume["monitor"])
            self.train_seconds = resume["train_seconds"]
            self.eval_seconds = resume["eval_seconds"]

    def reach(
        self,
        checkpoint: int,
        terms: dict[str, torch.Tensor],
        batch: TensorDictBase,
        train_seconds: float,
        evaluated: tuple[dict[str, float], float] | None = None,
    ) -> bool:
        """Record the learning-curve point ``checkpoint``, reached with the last update's
        ``terms`` on ``batch`` after ``train_seconds`` more of training; returns whether
        the run ends here (its last point, or ``on_point`` stopped it early, that point's
        evaluation being the final one).

        ``evaluated``: the point's evaluation, ``(metrics, seconds)``, when made elsewhere
        (a batched evaluation of several runs); else ``evaluate_policy`` makes it here.
        """
        self.done = checkpoint
        self.train_seconds += train_seconds
        start = time.perf_counter()
        point = {"step": checkpoint, **{k: float(v) for k, v in terms.items()}}
        if self.monitor is not None:
            # The last training batch: monitoring draws nothing from the run's streams.
            self.monitored.append({"step": checkpoint, **self.monitor(self.algo, batch)})
        final = checkpoint == self.steps
        if evaluated is None:
            metrics = self.evaluate_policy(self.algo.policy, final)
        else:
            metrics, seconds = evaluated
            self.eval_seconds += seconds
        point.update(curve_metrics(metrics))
        self.curve.append(point)
        self.eval_seconds += time.perf_counter() - start
        if self.on_point is not None and bool(self.on_point(point, metrics)):
            final = True
        if final:
            self.final = metrics
            return True
        if self.on_checkpoint is not None:
            self.on_checkpoint(
                capture_state(
                    self.algo,
                    self.generator,
                    self.device,
                    self.done,
                    self.curve,
                    self.monitored,
                    self.train_seconds,
                    self.eval_seconds,
                )
            )
        return False

    def result(self, train_rows: int) -> dict[str, Any]:
        """The run's record fields and, under ``"policy"``, the trained policy module."""
        return {
            "metrics": self.final,
            "curve": self.curve,
            "monitor": self.monitored,
            "hparams": {k: jsonable(v) for k, v in self.algo.hparams.items()},
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "train_rows": train_rows,
            "policy": self.algo.policy,
        }


def capture_state(
    algo: Any,
    generator: torch.Generator,
    device: torch.device,
    step: int,
    curve: list[dict[str, float]],
    monitored: list[dict[str, float]],
    train_seconds: float,
    eval_seconds: float,
) -> dict[str, Any]:
    """A copy of the training state after ``step`` updates, as tensors and plain containers.

    The policy is saved too, in case it holds state that the loss modules do not.
    """
    state = {
        "step": step,
        "loss_modules": {role: m.state_dict() for role, m in algo.loss_modules.items()},
        "policy": algo.policy.state_dict(),
        "optimizer": algo.optimizer.state_dict(),
        "sampler_rng": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "curve": [dict(point) for point in curve],
        "monitor": [dict(point) for point in monitored],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return _copy(state)


def _copy(value: Any) -> Any:
    # state_dicts hand out the live tensors, which the next updates change in place.
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def restore_state(
    state: dict[str, Any],
    algo: Any,
    generator: torch.Generator,
    device: torch.device,
    *,
    resumable: list[int],
) -> int:
    """Load a :func:`capture_state` state into ``algo`` and the random streams; its step."""
    fields = (
        *("step", "loss_modules", "policy", "optimizer", "sampler_rng", "torch_rng"),
        *("curve", "monitor", "train_seconds", "eval_seconds"),
    )
    missing = [f for f in fields if f not in state]
    if missing:
        raise ValueError(f"training state lacks {missing}")
    if state["step"] not in resumable:
        raise ValueError(
            f"training state is at step {state['step']!r}, not one of the learning-curve "
            f"points {resumable} this run saves at"
        )
    if set(state["loss_modules"]) != set(algo.loss_modules):
        raise ValueError(
            f"training state has loss modules {sorted(state['loss_modules'])}, this "
            f"algorithm {sorted(algo.loss_modules)}"
        )
    try:
        for role, module in algo.loss_modules.items():
            module.load_state_dict(state["loss_modules"][role])
        algo.policy.load_state_dict(state["policy"])
        # A copy: the optimiser adopts the given tensors and would change ``state``.
        algo.optimizer.load_state_dict(_copy(state["optimizer"]))
        generator.set_state(state["sampler_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise ValueError(f"training state does not fit this run: {error}") from error
    return state["step"]


def curve_metrics(metrics: dict[str, float]) -> dict[str, float]:
    keep = ("reward", "latent_reward", "regret", "hit_rate", "validation_hit_rate")
    return {f"eval_{k}": metrics[k] for k in keep if k in metrics}


def jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)

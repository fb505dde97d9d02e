"""Benchmark configuration: what to run (scenarios x algorithms x seeds) and how (steps, sizes).

A :class:`BenchmarkConfig` is the whole description of a benchmark; the named presets are
starting points that command-line options override. Names are checked against the scenario
and algorithm registries when the config is built (:func:`make_config`), once, so a typo
fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drpo_rl.benchmark.references import (
    BC_EXPERT,
    ONE_STEP_REFERENCES,
    PLANNER,
    REFERENCES,
    trained_algorithm,
)

# The paper's algorithm set (section 5), in the order its tables list them.
PAPER_ALGORITHMS = (
    "apg",
    "bc",
    "crr",
    "bppo",
    "awr",
    "iql",
    "asymre",
    "adapt-bc",
    "drpo-exp",
    "drpo",
)
# What the project adds to the paper's set for offline logs.
EXTRA_ALGORITHMS = ("drpo-q", "cql")
MAIN_SCENARIOS = ("medium", "extreme")
NOISE_SWEEP = tuple(f"noise-{p}" for p in range(0, 90, 10))
SWEEPS = {"noise": NOISE_SWEEP}


def check_scenario(name: str) -> None:
    """Raise ``ValueError`` listing the valid scenarios if the log generator rejects ``name``.

    Example:
        >>> check_scenario("nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown scenario 'nope'; valid scenarios: ...
    """
    from drpo_rl.data import list_scenarios, scenario_weights

    try:
        scenario_weights(name)
    except ValueError as error:
        raise ValueError(
            f"unknown scenario {name!r}; valid scenarios: {', '.join(list_scenarios())}"
        ) from error


#: The largest training batch a config accepts (rows sampled and held at every step).
MAX_BATCH_SIZE = 1 << 20


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything that defines a benchmark run; see :data:`PRESETS` for the named ones.

    Args:
        preset: the preset this config came from (recorded in the results).
        env: environment name for :func:`envs.make_env` (logs and evaluation share it).
        env_overrides: config overrides of that environment (both together:
            :attr:`env_spec`, which checks them).
        scenarios: log scenarios (``medium``, ``extreme``, ``clean``, ``noise-<p>``).
        algorithms: learners from the algorithm registry.
        references: reference rows among :data:`REFERENCES`.
        seeds: one run per seed; the seed fixes the logs, the training and the evaluation.
        steps: gradient steps per run.
        batch_size: mini-batch size.
        lr: learning rate of every optimiser.
        log_samples: rows of logs per scenario and seed.
        eval_users: simulated users of the final evaluation.
        curve_points: evaluations along training (the learning curve), besides the final.
        curve_users: simulated users per learning-curve evaluation.
        device: where logs, training and evaluation run.
        hparams: per-algorithm hyper-parameter overrides, ``{name: {key: value}}``.

    Example:
        >>> cfg = PRESETS["default"]
        >>> cfg.scenarios, len(cfg.seeds), cfg.algorithms == PAPER_ALGORITHMS
        (('medium', 'extreme'), 3, True)
        >>> PRESETS["paper"].batch_size, PRESETS["paper"].steps, PRESETS["paper"].lr
        (320, 5000, 0.0003)
    """

    preset: str
    env: str = "RecSimBandit"
    env_overrides: Mapping[str, Any] = field(default_factory=dict)
    scenarios: tuple[str, ...] = MAIN_SCENARIOS
    algorithms: tuple[str, ...] = PAPER_ALGORITHMS
    references: tuple[str, ...] = ONE_STEP_REFERENCES
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 200
    batch_size: int = 320
    lr: float = 1e-3
    log_samples: int = 20_000
    eval_users: int = 5_000
    curve_points: int = 4
    curve_users: int = 1_000
    device: str = "cpu"
    hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_samples", "eval_users", "curve_users"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.curve_points, int) or self.curve_points < 0:
            raise ValueError(f"curve_points must be an integer >= 0, got {self.curve_points!r}")
        if self.batch_size > MAX_BATCH_SIZE:
            # Each step samples and holds a batch: 10**9 rows would exhaust the memory.
            raise ValueError(
                f"batch_size must be at most {MAX_BATCH_SIZE}, got {self.batch_size!r}"
            )
        # No envs.common.checks here: `drpo-rl --help` imports this module, and envs torch.
        is_number = isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
        if not (is_number and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite positive number, got {self.lr!r}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative integers, got {self.seeds!r}")
        for name in ("scenarios", "algorithms", "seeds"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates: {list(values)}")
        if not self.scenarios:
            raise ValueError("scenarios must not be empty")
        if not self.algorithms and not self.references:
            raise ValueError("nothing to run: no algorithms and no reference rows")

    @property
    def env_spec(self):
        """The env of the logs and of the evaluation, as one checked :class:`envs.EnvSpec`.

        Made on demand, not stored: the config travels to worker processes by pickling.
        """
        from envs import EnvSpec

        try:
            # EnvSpec's errors name the valid environments or config fields themselves.
            return EnvSpec(self.env, self.env_overrides)
        except ValueError as error:
            raise ValueError(f"env {self.env!r}: {error}") from error

    @property
    def sessions(self) -> bool:
        """Whether the env has multi-step sessions (``[time, env]`` logs with a return-to-go)."""
        return self.env_spec.config.dynamics().max_length > 1

    @property
    def _item_actions(self) -> bool:
        return self.env_spec.config.action_type == "item"

    def algorithm_hparams(self, row: str) -> dict[str, Any]:
        """The options the run ``row`` trains with: on session logs the registry's session
        defaults (return-to-go scores), then this config's ``hparams[row]``.

        Example:
            >>> make_config("tiny").algorithm_hparams("drpo")
            {}
            >>> make_config("tiny", env="UserSession").algorithm_hparams("drpo")
            {'score': 'return_to_go'}
        """
        from drpo_rl.algorithms.registry import session_defaults

        defaults = session_defaults(trained_algorithm(row)) if self.sessions else {}
        return {**defaults, **self.hparams.get(row, {})}

    def validate(self) -> None:
        """Check every name against its registry and the device; raises ``ValueError``.

        :func:`make_config` calls it; the benchmark runs only configs it made or checked.
        """
        from drpo_rl.algorithms import offline_algorithms

        self.env_spec  # noqa: B018 - checks the env name and overrides
        for scenario in self.scenarios:
            check_scenario(scenario)
        known = offline_algorithms()
        unknown = [a for a in self.algorithms if a not in known]
        if unknown:
            raise ValueError(
                f"unknown algorithm(s) {unknown}; valid algorithms: {', '.join(known)}"
            )
        bad_refs = [r for r in self.references if r not in REFERENCES]
        if bad_refs:
            raise ValueError(
                f"unknown reference row(s) {bad_refs}; valid references: {', '.join(REFERENCES)}"
            )
        if PLANNER in self.references and not (self.sessions and self._item_actions):
            raise ValueError(
                f"reference {PLANNER!r}: plans sessions of item ids; env {self.env!r} (with "
                f"{dict(self.env_overrides)}) has one-step episodes or embedding actions"
            )
        stray = [a for a in self.hparams if a not in self.algorithms and a != BC_EXPERT]
        if stray:
            raise ValueError(
                f"hparams given for algorithm(s) {stray} that are not in this run's "
                f"algorithms {list(self.algorithms)}"
            )
        from drpo_rl.algorithms.registry import check_logged_keys, resolve_options
        from drpo_rl.data.generate import logged_keys

        for row in self.hparams:
            # What the run trains with (session defaults included) is what is checked; the
            # transformer policy against the env's observation too.
            row_hparams = self.algorithm_hparams(row)
            env = self.env_spec.make() if row_hparams.get("policy") == "transformer" else None
            try:
                resolve_options(trained_algorithm(row), env, **row_hparams)
            except ValueError as error:
                raise ValueError(f"hparams of {row!r}: {error}") from error
        logged = logged_keys(self.sessions)
        for row in (*self.algorithms, *([BC_EXPERT] if BC_EXPERT in self.references else ())):
            check_logged_keys(trained_algorithm(row), self.algorithm_hparams(row), logged)
        from envs.devices import check_device  # imports torch: only once a run is configured

        check_device(self.device)

    def run_settings(self) -> dict[str, Any]:
        """The settings every run of one output folder must share to be comparable.

        Scenarios, algorithms and seeds may grow between re-runs of a folder; anything else
        changing would mix incomparable numbers, so a resume checks these.
        """
        grid = {"preset", "scenarios", "algorithms", "references", "seeds"}
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in grid
        }

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


#: `UserSession` overrides of a world where myopia loses, the session benchmark's world:
#: fatigue damps rewards only mildly, but repeating a cluster bores the user (boredom 0.4
#: per unit of fatigue against a patience of 3), and the clusters are wide enough apart in
#: reward (delta 1) that another cluster's items still please. The greedy one-step oracle
#: keeps to the user's favourite cluster and loses about a third of the session return
#: to a policy that spreads its items over clusters (docs/method.md, "Sessions").
MYOPIA_WORLD: dict[str, float | int] = {
    "max_length": 20,
    "patience": 3.0,
    "boredom": 0.4,
    "fatigue_strength": 0.1,
    "fatigue_decay": 0.8,
    "drift_rate": 0.1,
    "delta": 1.0,
}

# Sized so that the default run (2 scenarios x 10 algorithms x 3 seeds + references)
# finishes within 5 minutes on two CPU cores; see the README for the measured time.
PRESETS: dict[str, BenchmarkConfig] = {
    "default": BenchmarkConfig(preset="default"),
    # The paper's optimisation set-up (batch 320, 5000 steps, Adam lr 3e-4), more seeds,
    # more logs and users; meant for a GPU (--device cuda).
    "paper": BenchmarkConfig(
        preset="paper",
        algorithms=PAPER_ALGORITHMS + EXTRA_ALGORITHMS,
        seeds=(0, 1, 2, 3, 4),
        steps=5000,
        batch_size=320,
        lr=3e-4,
        log_samples=200_000,
        eval_users=100_000,
        curve_points=10,
        curve_users=10_000,
    ),
    # The session benchmark (drpo-rl bench --env UserSession): the myopia world, the
    # paper's algorithm set, the planner as the session reference; sized to finish within
    # 5 minutes on two CPU cores (see the README for the measured time).
    "sessions": BenchmarkConfig(
        preset="sessions",
        env="UserSession",
        env_overrides=MYOPIA_WORLD,
        references=REFERENCES,
        seeds=(0, 1),
        steps=250,
        log_samples=20_480,
        eval_users=1_500,
        curve_points=2,
        curve_users=400,
    ),
    # Seconds, for smoke tests of the pipeline itself.
    "tiny": BenchmarkConfig(
        preset="tiny",
        scenarios=("medium",),
        algorithms=("bc", "drpo"),
        seeds=(0,),
        steps=20,
        batch_size=64,
        log_samples=1_000,
        eval_users=500,
        curve_points=1,
        curve_users=200,
    ),
}


def make_config(
    preset: str = "default",
    *,
    sweep: str | None = None,
    **changes: Any,
) -> BenchmarkConfig:
    """A preset with ``changes`` applied (``None`` values keep the preset's), validated.

    ``sweep="noise"`` replaces the scenarios with ``noise-0`` ... ``noise-80``.

    Example:
        >>> cfg = make_config("tiny", seeds=(3, 4), steps=None)
        >>> cfg.seeds, cfg.steps
        ((3, 4), 20)
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if sweep is not None:
        if sweep not in SWEEPS:
            raise ValueError(f"unknown sweep {sweep!r}; valid sweeps: {', '.join(SWEEPS)}")
        if "scenarios" in changes:
            raise ValueError("give either --sweep or --scenarios, not both")
        changes["scenarios"] = SWEEPS[sweep]
    for name in ("scenarios", "algorithms", "references", "seeds"):
        if name in changes:
            changes[name] = tuple(changes[name])
    valid = {f.name for f in dataclasses.fields(BenchmarkConfig)} - {"preset"}
    unknown = sorted(set(changes) - valid)
    if unknown:
        raise ValueError(f"unknown benchmark setting(s) {unknown}; valid: {sorted(valid)}")
    config = dataclasses.replace(PRESETS[preset], **changes)
    config.validate()
    return config


def parse_seeds(text: str | Sequence[int]) -> tuple[int, ...]:
    """Seeds from ``"3"`` (seeds 0, 1, 2), ``"0,4,7"`` (those seeds) or a sequence.

    Example:
        >>> parse_seeds("3"), parse_seeds("0,4,7")
        ((0, 1, 2), (0, 4, 7))
    """
    if not isinstance(text, str):
        return tuple(int(s) for s in text)
    try:
        if "," in text:
            return tuple(int(s) for s in text.split(",") if s.strip())
        count = int(text)
    except ValueError as error:
        raise ValueError(
            f"seeds: expected a count like '3' or a list like '0,4,7', got {text!r}"
        ) from error
    if count < 1:
        raise ValueError(f"seeds: expected a positive count, got {count}")
    return tuple(range(count))

"""Re-load the trained policy of a finished benchmark run, to evaluate it again elsewhere.

A run folder holds the run's record (JSON: algorithm, resolved hyper-parameters) and its
policy weights (``.pt``, plain tensors); the output folder's ``benchmark.json`` names the
environment. Rebuilding the algorithm from the registry with the recorded hyper-parameters
and loading the weights (:func:`drpo_rl.checkpoints.load_policy`) gives back the policy that
was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drpo_rl.benchmark.references import trained_algorithm
from drpo_rl.benchmark.run import EVAL_SEED_OFFSET
from drpo_rl.benchmark.store import SETTINGS_FILE, ResultStore, RunKey, read_json
from drpo_rl.checkpoints import load_policy


@dataclass
class TrainedRun:
    """A finished run's policy and what is needed to evaluate it as the benchmark did.

    Attributes:
        policy: the trained policy module (on the CPU).
        env: environment name; env_overrides: its config overrides.
        record: the run's JSON record (``metrics`` holds the benchmark's evaluation).
        eval_seed, eval_users: the seed and user count of the benchmark's final evaluation.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from drpo_rl.benchmark import make_config, run_benchmark
        >>> from drpo_rl.evaluation import evaluate
        >>> out = Path(tempfile.mkdtemp())
        >>> config = make_config("tiny", algorithms=("drpo",), references=())
        >>> _ = run_benchmark(config, out, progress=False, echo=lambda *args: None)
        >>> run = load_trained_run(out / "runs/medium/drpo/seed-0.json")
        >>> run.env, run.record["algorithm"]
        ('RecSimBandit', 'drpo')
        >>> metrics = evaluate(run.policy, run.env, num_users=run.eval_users, seed=run.eval_seed)
        >>> metrics["reward"] == run.record["metrics"]["reward"]
        True
    """

    policy: Any
    env: str
    env_overrides: dict[str, Any]
    record: dict[str, Any]
    eval_seed: int
    eval_users: int

    @property
    def env_spec(self):
        """The run's environment as an :class:`envs.EnvSpec`."""
        from envs import EnvSpec

        return EnvSpec(self.env, self.env_overrides)


def load_trained_run(path: str | Path) -> TrainedRun:
    """Load ``runs/<scenario>/<algorithm>/seed-<k>.json`` (or its ``.pt``) of an output folder.

    Raises ``ValueError`` naming the file when the run has no weights (reference rows
    without a learner: oracle, behaviour) or the folder is not a benchmark output.
    """
    from drpo_rl.models import PolicySpecs
    from envs import EnvSpec

    path = Path(path).with_suffix(".json")
    if not path.is_file():
        raise ValueError(f"{path}: no such run record")
    out, key = RunKey.from_record_path(path)
    record = ResultStore(out).load(key)
    weights = path.with_suffix(".pt")
    if not weights.is_file():
        raise ValueError(
            f"{weights}: no policy weights for run {record.get('algorithm')!r} (only trained "
            "runs have weights; oracle and behaviour rows are evaluated directly)"
        )
    settings_path = path.parents[3] / SETTINGS_FILE
    if not settings_path.is_file():
        raise ValueError(f"{settings_path}: missing; {path} is not inside a benchmark folder")
    settings = read_json(settings_path, kind=dict)
    _require(settings_path, settings, {"env": str, "env_overrides": dict, "eval_users": int})
    _require(path, record, {"algorithm": str, "hparams": dict, "seed": int})
    spec = EnvSpec(settings["env"], settings["env_overrides"])
    specs = PolicySpecs.from_env(spec.make())
    policy = load_policy(trained_algorithm(record["algorithm"]), specs, weights, record["hparams"])
    return TrainedRun(
        policy=policy,
        env=settings["env"],
        env_overrides=dict(settings["env_overrides"]),
        record=record,
        eval_seed=EVAL_SEED_OFFSET + int(record["seed"]),
        eval_users=int(settings["eval_users"]),
    )


def _require(path: Path, document: Any, fields: dict[str, type]) -> None:
    """Refuses a JSON document lacking one of ``fields`` (or holding it with another type)."""
    for field, kind in fields.items():
        value = document.get(field) if isinstance(document, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(
                f"{path}: expected entry {field!r} ({kind.__name__}), got {value!r}; the file "
                "was not written by drpo-rl bench or was edited"
            )

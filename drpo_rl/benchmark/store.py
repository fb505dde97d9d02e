"""The benchmark's output folder: one JSON file per finished run, written atomically.

Layout::

    <out>/
        benchmark.json                      settings every run of the folder shares
        logs/<scenario>/seed-<k>/           generated logs (an OfflineLogs dataset), cached
        runs/<scenario>/<algorithm>/seed-<k>.json   one finished run
        runs/<scenario>/<algorithm>/seed-<k>.pt     its trained policy's weights (learners)
        results.csv, results.json, *.png    written by the reporting step

A run's file appears only once the run is finished (written to a temporary name, then
renamed), so an interrupted benchmark leaves no half-written result: the next invocation
redoes exactly the runs without a file. The policy weights are written before the JSON, so
a run's JSON implies its weights; they are plain tensors (``torch.load(weights_only=True)``
reads them, nothing is unpickled).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETTINGS_FILE = "benchmark.json"


@dataclass(frozen=True, order=True)
class RunKey:
    """One cell of the benchmark grid.

    Example:
        >>> RunKey("medium", "drpo", 2).relative_path
        'runs/medium/drpo/seed-2.json'
    """

    scenario: str
    algorithm: str
    seed: int

    @property
    def relative_path(self) -> str:
        return f"runs/{self.scenario}/{self.algorithm}/seed-{self.seed}.json"

    def __str__(self) -> str:
        return f"{self.scenario}/{self.algorithm}/seed-{self.seed}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.json"
        >>> write_json_atomic(target, {"x": 1})
        >>> json.loads(target.read_text())
        {'x': 1}
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    """Parse a JSON file, naming it in the error when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


class ResultStore:
    """Finished runs and shared settings of one output folder.

    Example:
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> store.check_settings({"steps": 10})
        >>> key = RunKey("medium", "bc", 0)
        >>> store.has(key)
        False
        >>> store.save(key, {"metrics": {"reward": 0.5}})
        >>> store.has(key), store.load(key)["metrics"]["reward"]
        (True, 0.5)
        >>> store.check_settings({"steps": 20})
        Traceback (most recent call last):
        ...
        ValueError: ...
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Record ``settings`` on first use; refuse a folder made with different ones."""
        path = self.root / SETTINGS_FILE
        if not path.exists():
            write_json_atomic(path, settings)
            return
        stored = read_json(path)
        # Round-trip through JSON so tuples and lists compare equal.
        wanted = json.loads(json.dumps(settings))
        differences = [
            f"{k}: folder has {stored.get(k)!r}, this run asks for {wanted.get(k)!r}"
            for k in sorted(set(stored) | set(wanted))
            if stored.get(k) != wanted.get(k)
        ]
        if differences:
            raise ValueError(
                f"output folder {self.root} holds results made with other settings; use "
                "another --out folder or the same settings. Differences: " + "; ".join(differences)
            )

    def path(self, key: RunKey) -> Path:
        return self.root / key.relative_path

    def has(self, key: RunKey) -> bool:
        return self.path(key).is_file()

    def save(self, key: RunKey, record: dict[str, Any]) -> None:
        write_json_atomic(self.path(key), record)

    def save_policy(self, key: RunKey, state_dict: dict[str, Any]) -> None:
        """Save a trained policy's ``state_dict`` beside the run's record (atomically)."""
        import torch

        path = self.path(key).with_suffix(".pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, key: RunKey) -> dict[str, Any]:
        record = read_json(self.path(key))
        for field in ("metrics",):
            if field not in record:
                raise ValueError(f"{self.path(key)}: run record has no {field!r} entry")
        return record

    def logs_path(self, scenario: str, seed: int) -> Path:
        return self.root / "logs" / scenario / f"seed-{seed}"

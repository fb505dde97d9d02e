"""The benchmark's output folder: one JSON file per finished run, written atomically.

Layout::

    <out>/
        benchmark.json                      settings every run of the folder shares
        .lock                               held by the benchmark writing the folder
        logs/<scenario>/seed-<k>/           generated logs (an OfflineLogs dataset), cached
        runs/<scenario>/<algorithm>/seed-<k>.json   one finished run
        runs/<scenario>/<algorithm>/seed-<k>.pt     its trained policy's weights (learners)
        runs/<scenario>/<algorithm>/seed-<k>.ckpt.pt  an unfinished run's training state
        results.csv, results.json, *.png    written by the reporting step

A run's file appears only once the run is finished (written to a temporary name, then
renamed), so an interrupted benchmark leaves no half-written result: the next invocation
redoes exactly the runs without a file. The policy weights are written before the JSON, so
a run's JSON implies its weights; they are plain tensors (``torch.load(weights_only=True)``
reads them, nothing is unpickled).

While a run trains, its training state is checkpointed beside it (atomically, tensors and
plain containers only) together with the settings it was made with; the next invocation
continues an unfinished run from there. The checkpoint is deleted once the run's record
is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drpo_rl.data.layout import settings_differences
from envs.common import files
from envs.common.files import write_atomic, write_json

SETTINGS_FILE = "benchmark.json"
# Held (envs.common.locks.exclusive_lock) by the one benchmark writing the folder.
LOCK_FILE = ".lock"


class BenchmarkFolderError(ValueError):
    """An output folder's files cannot be used: made with other settings, unreadable, or
    tampered with. The message names the file; the fix is the user's (another folder, or
    deleting the file).

    Example:
        >>> raise BenchmarkFolderError("out/benchmark.json: made with other settings")
        Traceback (most recent call last):
        ...
        drpo_rl.benchmark.store.BenchmarkFolderError: out/benchmark.json: made with other settings
    """


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

    @classmethod
    def from_record_path(cls, path: str | os.PathLike) -> tuple[Path, RunKey]:
        """The output folder and the cell of a record's path ``<out>/runs/<s>/<a>/seed-<k>.json``.

        Example:
            >>> RunKey.from_record_path("out/runs/medium/drpo/seed-2.json")
            (PosixPath('out'), RunKey(scenario='medium', algorithm='drpo', seed=2))
        """
        path = Path(path)
        seed = path.stem.removeprefix("seed-")
        if not (
            len(path.parts) >= 4
            and path.parts[-4] == "runs"
            and path.suffix == ".json"
            and path.stem.startswith("seed-")
            and seed.isdigit()
        ):
            raise BenchmarkFolderError(
                f"{path}: not a run record's path (<out>/runs/<scenario>/<algorithm>/seed-<k>.json)"
            )
        return path.parents[3], cls(path.parts[-3], path.parts[-2], int(seed))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`envs.common.files.write_atomic`).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.json"
        >>> write_json_atomic(target, {"x": 1})
        >>> json.loads(target.read_text())
        {'x': 1}
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, indent=1, sort_keys=True)


def read_json(path: Path, *, kind: type | None = None) -> Any:
    """Parse a JSON file (of top-level type ``kind``, when given), naming it in the error."""
    try:
        return files.read_json(path, kind=kind)
    except ValueError as error:
        raise BenchmarkFolderError(str(error)) from error


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
        drpo_rl.benchmark.store.BenchmarkFolderError: ...
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Record ``settings`` on first use; refuse a folder made with different ones."""
        path = self.root / SETTINGS_FILE
        if not path.exists():
            write_json_atomic(path, settings)
            return
        differences = settings_differences(read_json(path, kind=dict), settings)
        if differences:
            raise BenchmarkFolderError(
                f"output folder {self.root} holds results made with other settings; use "
                "another --out folder or the same settings. Differences: " + "; ".join(differences)
            )

    def path(self, key: RunKey) -> Path:
        return self.root / key.relative_path

    def has(self, key: RunKey) -> bool:
        return self.path(key).is_file()

    def settings_digest(self) -> str | None:
        """SHA-256 of the folder's shared settings (``benchmark.json`` as JSON data), or
        None before they are recorded: what ties a run record to the folder it was made in."""
        path = self.root / SETTINGS_FILE
        if not path.is_file():
            return None
        text = json.dumps(read_json(path, kind=dict), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, key: RunKey, record: dict[str, Any]) -> None:
        """Write the run's record, stamped with its cell and the folder's settings digest
        (checked by :meth:`load`); its checkpoint, if any, is then of no further use."""
        record = {**record, "run": str(key), "settings_sha256": self.settings_digest()}
        write_json_atomic(self.path(key), record)
        self.checkpoint_path(key).unlink(missing_ok=True)

    def save_policy(self, key: RunKey, state_dict: dict[str, Any]) -> None:
        """Save a trained policy's ``state_dict`` beside the run's record (atomically)."""
        _torch_save_atomic(
            {k: v.detach().cpu() for k, v in state_dict.items()}, self.path(key).with_suffix(".pt")
        )

    def checkpoint_path(self, key: RunKey) -> Path:
        return self.path(key).with_suffix(".ckpt.pt")

    def save_checkpoint(self, key: RunKey, state: dict[str, Any], settings: dict[str, Any]) -> None:
        """Save an unfinished run's training ``state`` with the ``settings`` it depends on.

        ``state`` must hold only tensors and plain containers (so that it loads with
        ``weights_only=True``); ``settings`` must be JSON-ready.

        Example:
            >>> import tempfile, torch
            >>> store, key = ResultStore(tempfile.mkdtemp()), RunKey("medium", "bc", 0)
            >>> store.save_checkpoint(key, {"step": 5, "w": torch.ones(2)}, {"steps": 10})
            >>> store.load_checkpoint(key, {"steps": 10})["step"]
            5
            >>> store.load_checkpoint(key, {"steps": 20})
            Traceback (most recent call last):
            ...
            drpo_rl.benchmark.store.BenchmarkFolderError: ...seed-0.ckpt.pt: checkpoint made...
            >>> store.save(key, {"metrics": {}})
            >>> store.load_checkpoint(key, {"steps": 10}) is None
            True
        """
        payload = {"settings": json.dumps(settings, sort_keys=True), "state": state}
        _torch_save_atomic(payload, self.checkpoint_path(key))

    def load_checkpoint(self, key: RunKey, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The training state saved for ``key`` (on the CPU), or ``None`` when there is none.

        On the CPU because random states must be CPU tensors; ``load_state_dict`` moves
        the rest to the model's device.

        Only tensors and plain containers are read (``torch.load(weights_only=True)``):
        a file holding anything else (a tampered pickle), an unreadable file, or one made
        with other ``settings`` raises ``ValueError`` naming the file; delete it to start
        the run again.
        """
        import torch

        path = self.checkpoint_path(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
            raise BenchmarkFolderError(
                f"{path}: not a readable training checkpoint (only tensors and plain "
                f"containers are loaded); delete it to start the run again. {error}"
            ) from error
        if not (
            isinstance(payload, dict)
            and isinstance(payload.get("settings"), str)
            and isinstance(payload.get("state"), dict)
            and isinstance(payload["state"].get("step"), int)
        ):
            raise BenchmarkFolderError(
                f"{path}: not a training checkpoint (expected a dict with 'settings' and a "
                "'state' with its 'step'); delete it to start the run again"
            )
        differences = settings_differences(json.loads(payload["settings"]), settings)
        if differences:
            raise BenchmarkFolderError(
                f"{path}: checkpoint made with other settings ({'; '.join(differences)}); "
                "delete it to start the run again"
            )
        return payload["state"]

    def load(self, key: RunKey) -> dict[str, Any]:
        """The record of run ``key``, refused (naming the file) unless it is a record of
        exactly this cell made in a folder of these settings: a record copied from another
        cell's folder or another output folder is not read as this one."""
        path = self.path(key)
        record = read_json(path, kind=dict)
        for field in ("metrics", "run", "settings_sha256"):
            if field not in record:
                raise BenchmarkFolderError(
                    f"{path}: run record has no {field!r} entry; delete it to run {key} again"
                )
        if record["run"] != str(key):
            raise BenchmarkFolderError(
                f"{path}: holds the record of run {record['run']!r}, not of {str(key)!r} (copied "
                f"or moved from another cell's folder); delete it to run {key} again"
            )
        digest = self.settings_digest()
        if record["settings_sha256"] != digest:
            raise BenchmarkFolderError(
                f"{path}: made in an output folder with other settings (settings digest "
                f"{record['settings_sha256']!r}, {self.root / SETTINGS_FILE} has {digest!r}); "
                f"delete it to run {key} again"
            )
        return record

    def logs_path(self, scenario: str, seed: int) -> Path:
        return self.root / "logs" / scenario / f"seed-{seed}"


def _torch_save_atomic(data: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: torch.save(data, tmp))

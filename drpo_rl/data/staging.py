"""Writing a dataset folder atomically: stage it in a hidden sibling, commit, rename.

A dataset is written in a hidden sibling folder (``.<name>.partial-<pid>-<hex>``) and renamed
to ``<path>`` only once the ``COMPLETE`` marker is in place, so a killed write never appears
at ``<path>`` and never loads as complete; the next write to the same ``<path>`` removes the
staging folders of writers that no longer run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchrl.data import LazyMemmapStorage

from drpo_rl.data.layout import (
    COMPLETE_MARKER,
    FORMAT_VERSION,
    METADATA_FILE,
    RESERVED_KEYS,
    STORAGE_DIR,
    record_files,
    refuse_non_finite,
)
from envs.common.files import (
    DiskFullError,
    free_bytes,
    fsync_path,
    fsync_tree,
    is_disk_full,
    write_atomic,
)
from envs.common.locks import exclusive_lock, lock_file_for
from envs.common.processes import process_alive

__all__ = ["StagedDataset"]

log = logging.getLogger(__name__)


class StagedDataset:
    """A dataset being written: a hidden sibling of ``path`` that becomes ``path`` on commit.

    Used as a context manager; leaving it without :meth:`commit` (an exception) deletes the
    staging folder, and a process killed inside it leaves only the hidden folder, which
    never loads and is removed by the next write to the same ``path``.

    Examples:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import ReplayBuffer
        >>> from drpo_rl.data.staging import StagedDataset
        >>> path = f"{tempfile.mkdtemp()}/logs"
        >>> with StagedDataset(path) as staged:
        ...     storage = staged.make_storage(8)
        ...     index = ReplayBuffer(storage=storage).extend(
        ...         TensorDict({"x": torch.arange(8)}, batch_size=[8]))
        ...     staged.commit(storage, {"note": "eight rows"})
        >>> from drpo_rl.data import OfflineLogs
        >>> OfflineLogs(path)[:3]["x"].tolist()
        [0, 1, 2]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.dir = self.path.parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex}"
        self._committed = False
        self._keep = False
        self._lock = contextlib.ExitStack()

    @property
    def lock_file(self) -> Path:
        """The lock every writer of ``path`` holds while it writes (outside the parent
        folder, which holds only datasets and the staging folders of killed writers)."""
        return lock_file_for(self.path)

    def __enter__(self) -> StagedDataset:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two writers of one path would both stage, and the second's rename would fail.
        self._lock.enter_context(
            exclusive_lock(
                self.lock_file,
                what=f"dataset {self.path}",
                hint="another run is writing it; wait for it to finish (then its dataset "
                "opens) or write elsewhere",
            )
        )
        try:
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise FileExistsError(
                    f"{self.path} already exists and is not an empty folder; refusing to "
                    "overwrite it"
                )
            _remove_abandoned_stagings(self.path)
            self.dir.mkdir()
        except BaseException:
            self._lock.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not (self._committed or self._keep):
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            self._lock.close()
        if exc is not None and is_disk_full(exc) and not isinstance(exc, DiskFullError):
            # Raised by a write of tensordict or TorchRL, which name no path or size.
            raise DiskFullError(
                self.path, free=free_bytes(self.path.parent), reason=exc.strerror
            ) from exc

    @property
    def storage_dir(self) -> Path:
        return self.dir / STORAGE_DIR

    def make_storage(self, num_rows: int, *, ndim: int = 1) -> LazyMemmapStorage:
        """An empty ``LazyMemmapStorage`` of ``num_rows`` interactions in the staging folder.

        Fill it through a plain :class:`~torchrl.data.ReplayBuffer` (``ndim=2`` storages take
        ``[env, time]`` batches); a ``TensorDictReplayBuffer`` would also store its
        ``"index"`` entry.
        """
        return _AllocatedMemmapStorage(
            num_rows, scratch_dir=self.storage_dir, ndim=ndim, auto_cleanup=False
        )

    def commit(self, storage: LazyMemmapStorage, metadata: Mapping[str, Any]) -> None:
        """Finishes the dataset: storage index, metadata, marker (last), then the rename.

        Refuses (``ValueError``, nothing left behind) a storage holding a NaN or an infinity
        in a floating-point entry. Everything written is flushed to the disk before the
        marker, so a power cut cannot leave a marked dataset with missing pages.
        """
        clash = [key for key in RESERVED_KEYS if key in metadata]
        if clash:
            raise ValueError(f"metadata keys {clash} are reserved for the dataset layout")
        if not storage.initialized or len(storage) == 0:
            raise ValueError("cannot commit an empty dataset: nothing was written to the storage")
        shape = list(storage._storage.shape)
        if len(storage) != math.prod(shape):
            raise ValueError(
                f"the storage holds {len(storage)} interactions but has room for "
                f"{math.prod(shape)}; a dataset must be filled exactly"
            )
        refuse_non_finite(
            storage._storage,
            lambda key: self.path,
            "refusing to write a dataset holding NaN or infinity",
        )
        # Zero-copy: the storage already lives in storage_dir; this adds TorchRL's index file.
        storage.dumps(self.storage_dir)
        # The tensors were written through memory maps: on the disk only once fsync'ed.
        fsync_tree(self.storage_dir)
        document = {
            "format_version": FORMAT_VERSION,
            "storage": {
                "shape": shape,
                "ndim": storage.ndim,
                "num_rows": len(storage),
                # Opening checks the files against these (a tampered index or layout).
                "files": record_files(self.storage_dir),
            },
            **metadata,
        }
        try:
            text = json.dumps(document, indent=2, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata is not JSON-serialisable: {err}") from err
        write_atomic(self.dir / METADATA_FILE, lambda tmp: tmp.write_text(text))
        marker = json.dumps({"format_version": FORMAT_VERSION})
        write_atomic(self.dir / COMPLETE_MARKER, lambda tmp: tmp.write_text(marker))
        try:
            # Atomic; replaces `path` only if it is absent or an empty folder.
            os.replace(self.dir, self.path)
        except OSError as err:
            # Kept, and said so truthfully: it is complete, and only this message knows it.
            self._keep = True
            raise FileExistsError(
                f"could not move the finished dataset to {self.path} ({err}; something "
                f"other than drpo_rl created it meanwhile); the complete dataset is kept at "
                f"{self.dir}: move it where you want it (a next write to {self.path} removes it)"
            ) from err
        self._committed = True
        fsync_path(self.path.parent)  # the rename itself


def _remove_abandoned_stagings(path: Path) -> None:
    """Deletes staging folders of ``path`` whose writing process no longer runs, saying so."""
    for candidate in path.parent.glob(f".{path.name}.partial-*"):
        pid = candidate.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            # A log record, not a warning: restarting is the expected recovery, not a fault.
            log.warning(
                "found an interrupted write of %s at %s (process %s no longer runs); "
                "removing it and starting again",
                path,
                candidate,
                pid,
            )
            shutil.rmtree(candidate, ignore_errors=True)


class _AllocatedMemmapStorage(LazyMemmapStorage):
    """A ``LazyMemmapStorage`` whose files get their disk blocks before any row is written.

    Memory-mapped files that the file system allocates lazily (sparse files, tmpfs) turn a
    full disk into a SIGBUS at some row, killing the process without a word. Here the
    bytes the files need (known from the first batch: its bytes per row times the rows) are
    compared with the space free before they are created, and then reserved
    (``posix_fallocate``); any of it failing raises :class:`DiskFullError` naming the
    dataset folder and the bytes needed.
    """

    def _init(self, data: Any) -> None:
        folder = Path(self.scratch_dir)
        needed = self.max_size * sum(
            leaf.element_size() * math.prod(leaf.shape[data.batch_dims :])
            for leaf in data.values(True, True)
        )
        free = free_bytes(folder)
        if needed > free:
            raise DiskFullError(folder.parent, needed=needed, free=free)
        try:
            super()._init(data)
            for path in sorted(folder.rglob("*.memmap")):
                size = path.stat().st_size
                if size:
                    fd = os.open(path, os.O_RDWR)
                    try:
                        os.posix_fallocate(fd, 0, size)
                    finally:
                        os.close(fd)
        except OSError as err:
            if is_disk_full(err) and not isinstance(err, DiskFullError):
                raise DiskFullError(
                    folder.parent, needed=needed, free=free_bytes(folder), reason=err.strerror
                ) from err
            raise

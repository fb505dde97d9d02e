"""Writing files so that a crash or a power cut never leaves half of one under its name.

:func:`write_atomic` is the one way drpo_rl writes a single file it may later trust (run
records, checkpoints, dataset metadata and markers, figures): the content goes to a
temporary file in the same folder, is flushed to the disk, and is renamed over the target;
a reader sees the old file or the new one, never a mix. :func:`fsync_tree` makes a whole
folder durable (used before a dataset's ``COMPLETE`` marker is written).

``envs`` does not import drpo_rl, so :mod:`envs.fitted` keeps its own cache writer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_path", "fsync_tree", "remove_temporaries", "write_atomic"]


_TEMPORARY_SUFFIX = ".tmp"


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Writes ``path`` through ``write(tmp)``, a temporary file in the same folder.

    ``write`` receives the temporary path and must create it. The file is then fsync'ed,
    renamed to ``path`` (atomic within a folder) and the folder fsync'ed, so the rename
    itself survives a power cut. On any error the temporary file is removed and ``path`` is
    left as it was. The folder must exist.

    Examples:
        >>> import json, tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "record.json"
        >>> write_atomic(target, lambda tmp: tmp.write_text(json.dumps({"x": 1})))
        >>> target.read_text()
        '{"x": 1}'
        >>> def broken(tmp):
        ...     tmp.write_text("half")
        ...     raise OSError("disk full")
        >>> write_atomic(target, broken)
        Traceback (most recent call last):
        ...
        OSError: disk full
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('{"x": 1}', ['record.json'])
    """
    path = Path(path)
    # Hidden and unique: concurrent writers never share a temporary file, and globs for
    # the target's suffix (e.g. *.json) never match one.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_TEMPORARY_SUFFIX}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def fsync_path(path: str | os.PathLike) -> None:
    """Flushes a file's or a folder's content (a folder's: its entries) to the disk.

    Examples:
        >>> import tempfile
        >>> fsync_path(tempfile.mkdtemp())
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Fsyncs every file and folder under ``folder`` (contents before the folder holding
    them), ``folder`` last. Links are not followed.

    Examples:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "a").mkdir()
        >>> _ = (root / "a" / "x.bin").write_bytes(b"\\0" * 8)
        >>> fsync_tree(root)
    """
    for parent, _folders, files in os.walk(folder, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(parent, name)):
                fsync_path(os.path.join(parent, name))
        fsync_path(parent)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Removes, under ``folder``, the temporary files of :func:`write_atomic` calls whose
    process was killed mid-write (a kill skips the clean-up); returns them.

    Only for a folder no one is writing to at the time: a live writer's temporary file
    would go too (its rename then fails, and nothing is lost but that write).

    Examples:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / ".seed-0.json.0123abcd.tmp").write_text("half")
        >>> write_atomic(root / "seed-0.json", lambda tmp: tmp.write_text("{}"))
        >>> [p.name for p in remove_temporaries(root)], sorted(p.name for p in root.iterdir())
        (['.seed-0.json.0123abcd.tmp'], ['seed-0.json'])
    """
    stale = sorted(Path(folder).rglob(f".*{_TEMPORARY_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale

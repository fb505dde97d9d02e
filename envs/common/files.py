"""Writing files so that a crash or a power cut never leaves half of one under its name.

:func:`write_atomic` is the one way the suite writes a single file it may later trust (run
records, checkpoints, dataset metadata and markers, figures, the fit cache): the content
goes to a temporary file in the same folder, is flushed to the disk, and is renamed over
the target; a reader sees the old file or the new one, never a mix. :func:`write_json` and
:func:`read_json` are the JSON documents on top of it. :func:`fsync_tree` makes a whole
folder durable (used before a dataset's ``COMPLETE`` marker is written).

A temporary file is named ``.<target name>.<writer pid>-<random hex>.tmp``: hidden, unique
to its writer, and telling whose it is, so that leftovers of killed writers can be removed
in a folder nobody writes to (:func:`remove_temporaries`) or, beside live writers, by
their dead pid (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envs.common.processes import process_alive

__all__ = [
    "DiskFullError",
    "file_sha256",
    "free_bytes",
    "fsync_path",
    "fsync_tree",
    "is_disk_full",
    "read_json",
    "remove_stale_temporaries",
    "remove_temporaries",
    "write_atomic",
    "write_json",
]


_TEMPORARY_SUFFIX = ".tmp"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write failed for want of disk space (or quota); the message names the path and,
    where known, the bytes needed and free.

    Example:
        >>> print(DiskFullError("/data/logs", needed=2_000_000, free=1_000))
        /data/logs: not enough disk space: needs 2,000,000 bytes, 1,000 free; free some space \
or write elsewhere
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        needed: int | None = None,
        free: int | None = None,
        reason: str | None = None,
    ) -> None:
        amounts = "" if needed is None else f": needs {needed:,} bytes"
        if free is not None:
            amounts += f", {free:,} free" if amounts else f": {free:,} bytes free"
        because = "" if reason is None else f" ({reason})"
        super().__init__(
            errno.ENOSPC,
            f"{path}: not enough disk space{because}{amounts}; free some space or write elsewhere",
        )
        self.path, self.needed, self.free, self.reason = Path(path), needed, free, reason

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        # Raised in a worker process, it travels back pickled: rebuild it from its parts.
        return _rebuild_disk_full, (str(self.path), self.needed, self.free, self.reason)


def _rebuild_disk_full(path, needed, free, reason) -> DiskFullError:
    return DiskFullError(path, needed=needed, free=free, reason=reason)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed for want of space or quota."""
    return isinstance(error, OSError) and error.errno in _DISK_FULL


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes free to this user on the file system of ``folder`` (or its nearest existing
    parent)."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}{_TEMPORARY_SUFFIX}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path, free=free_bytes(path.parent), reason=err.strerror) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def write_json(
    path: str | os.PathLike,
    data: Any,
    *,
    indent: int = 2,
    sort_keys: bool = False,
    allow_nan: bool = True,
) -> None:
    """Writes ``data`` as a JSON document to ``path`` with :func:`write_atomic`.

    The document is serialised before anything is written, so data that JSON cannot hold
    (or NaN with ``allow_nan=False``) raises ``ValueError`` and leaves ``path`` alone.

    Examples:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "meta.json"
        >>> write_json(target, {"b": 1, "a": [0.5]}, indent=None, sort_keys=True)
        >>> target.read_text()
        '{"a": [0.5], "b": 1}'
        >>> write_json(target, {"x": float("nan")}, allow_nan=False)
        Traceback (most recent call last):
        ...
        ValueError: ...meta.json: not JSON-serialisable (Out of range float values are not \
JSON compliant: nan)
    """
    try:
        text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: not JSON-serialisable ({err})") from err
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike, *, kind: type | None = None) -> Any:
    """The JSON document in ``path``; a file that is not one (or, with ``kind``, whose
    top-level value is not a ``kind``, e.g. ``dict`` for an object) raises ``ValueError``
    naming it. Nothing but JSON is ever parsed: a pickle is refused as "not a JSON document".

    Examples:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "meta.json"
        >>> _ = target.write_text('{"x": 1')
        >>> read_json(target)
        Traceback (most recent call last):
        ...
        ValueError: ...meta.json: not a JSON document (Expecting ',' delimiter: line 1 \
column 8 (char 7))
        >>> _ = target.write_text('[1, 2]')
        >>> read_json(target, kind=dict)
        Traceback (most recent call last):
        ...
        ValueError: ...meta.json: expected a JSON object, got a JSON array
    """
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path}: not a JSON document ({err})") from err
    if kind is not None and not isinstance(document, kind):
        raise ValueError(
            f"{path}: expected a JSON {_JSON_NAMES.get(kind, kind.__name__)}, got a JSON "
            f"{_JSON_NAMES.get(type(document), type(document).__name__)}"
        )
    return document


_JSON_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex): what identifies a data file in caches and logs."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: str | os.PathLike) -> None:
    """Flushes a file's or a folder's content (a folder's: its entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Fsyncs every file and folder under ``folder`` (contents before the folder holding
    them), ``folder`` last. Links are not followed."""
    for parent, _folders, files in os.walk(folder, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(parent, name)):
                fsync_path(os.path.join(parent, name))
        fsync_path(parent)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Removes, under ``folder``, the temporary files of :func:`write_atomic` calls whose
    process was killed mid-write (a kill skips the clean-up); returns them.

    Only for a folder no one is writing to at the time: a live writer's temporary file
    would go too (its rename then fails, and nothing is lost but that write). Beside live
    writers, use :func:`remove_stale_temporaries`.

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


def remove_stale_temporaries(path: str | os.PathLike, *, older_than: float) -> list[Path]:
    """Removes the temporary files of ``path`` that no write will finish; returns them.

    A temporary file of ``path`` (named by :func:`write_atomic`) is stale when the process
    that wrote it no longer runs (killed mid-write), or when it was last written before
    ``older_than`` (a ``time.time()``; a live writer's file is newer, and the pid of an old
    one may have been reused). Live writers' files, other targets' files and files not named
    by :func:`write_atomic` are left alone.

    Examples:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> dead, live = 2**22 + 4321, os.getpid()  # above Linux's pid_max: no such process
        >>> for pid in (dead, live):
        ...     _ = (root / f".fit.pt.{pid}-00ff{_TEMPORARY_SUFFIX}").write_text("half")
        >>> [p.name for p in remove_stale_temporaries(root / "fit.pt", older_than=0)]
        ['.fit.pt.4198625-00ff.tmp']
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for candidate in sorted(path.parent.glob(f".*{_TEMPORARY_SUFFIX}")):
        name = candidate.name
        pid = name[len(prefix) : -len(_TEMPORARY_SUFFIX)].split("-", 1)[0]
        if not (name.startswith(prefix) and pid.isdigit()):
            continue
        try:
            stale = not process_alive(int(pid)) or candidate.stat().st_mtime < older_than
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
        if stale:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed

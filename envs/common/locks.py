"""Exclusive locks on output folders: two runs never write the same folder at once.

:func:`exclusive_lock` takes an advisory ``fcntl.flock`` lock on a lock file beside the data
and writes into it who holds it (process id, host, command line, since when), so that a
second run can say who is in its way. The kernel releases the lock when its holder ends,
however it ends (a SIGKILL included): a lock file left behind never blocks anyone; the
holder removes the file when it is done.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["FolderBusyError", "exclusive_lock", "lock_file_for"]


def lock_file_for(path: str | os.PathLike) -> Path:
    """A lock file for ``path`` outside the folder that holds it, in this machine's
    temporary folder (per user): for data whose folder must hold nothing else, even after
    a writer was killed. Every process of this user on this machine finds the same file for
    the same resolved path.

    Example:
        >>> lock_file_for("a/../logs") == lock_file_for("logs")
        True
    """
    resolved = str(Path(path).resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / f"drpo_rl-locks-{os.getuid()}"
    return folder / f"{Path(resolved).name}-{digest}.lock"


class FolderBusyError(RuntimeError):
    """Another process holds the lock of a folder this one was asked to write.

    The message names the folder and its holder; the fix is the user's (wait for it, or
    write elsewhere).

    Example:
        >>> raise FolderBusyError("output folder out is in use by process 12 on host")
        Traceback (most recent call last):
        ...
        envs.common.locks.FolderBusyError: output folder out is in use by process 12 on host
    """


@contextlib.contextmanager
def exclusive_lock(
    lock_file: str | os.PathLike,
    *,
    what: str,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
    hint: str = "wait for it to finish or write elsewhere",
) -> Iterator[None]:
    """Hold the exclusive lock of ``lock_file`` (created if needed) during the block.

    Args:
        lock_file: the lock file (its folder is created).
        what: the thing locked, as the message should name it (e.g. ``"output folder x"``).
        wait: block until the holder releases it; otherwise raise at once.
        on_wait: called with the holder's description before blocking (``wait=True``).
        hint: what the user can do, appended to the error.

    Raises:
        FolderBusyError: another process (or another open of the file) holds the lock and
            ``wait`` is false; the message says who holds it.

    Example:
        >>> import tempfile, pathlib
        >>> lock = pathlib.Path(tempfile.mkdtemp()) / ".lock"
        >>> with exclusive_lock(lock, what="folder x"):
        ...     with exclusive_lock(lock, what="folder x"):
        ...         pass
        Traceback (most recent call last):
        ...
        envs.common.locks.FolderBusyError: folder x is in use by process ...; wait for it ...
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(lock_file, what, wait, on_wait, hint)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, _describe_self().encode(), 0)
        yield
    finally:
        # Removed while still held: whoever opened the old file meanwhile sees, once it
        # gets the lock, that the name no longer leads to it, and starts over.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_file)
        os.close(fd)  # releases the lock


def _open_locked(lock_file: Path, what, wait, on_wait, hint) -> int:
    """A descriptor of ``lock_file`` holding its lock, the file still under that name."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise FolderBusyError(f"{what} is in use by {holder}; {hint}") from None
                if on_wait is not None:
                    on_wait(holder)
                    on_wait = None
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # its holder removed it on release: lock the file now there


def _holder(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
    return text or "another process (it has not said who yet)"


def _describe_self() -> str:
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = " ".join(sys.argv)[:300] or sys.executable
    return f"process {os.getpid()} on {socket.gethostname()} ({command}), since {since}"

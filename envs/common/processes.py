"""Processes: whether one still runs, and stopping children for good.

:func:`process_alive` tells a killed writer's leftovers from a live writer's files (the
fit cache, dataset staging, :func:`envs.common.files.remove_stale_temporaries`).
:func:`stop_processes` ends child processes (a benchmark's workers) without leaving one
behind; :func:`die_with_parent` makes a child end when its parent is killed outright.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

__all__ = ["die_with_parent", "process_alive", "stop_processes"]

# From <linux/prctl.h>: deliver a signal to this process when its parent thread exits.
_PR_SET_PDEATHSIG = 1


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs (signal 0 probes without signalling).

    Example:
        >>> process_alive(os.getpid()), process_alive(2**22 + 4321)  # above Linux's pid_max
        (True, False)
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def stop_processes(processes: Sequence[BaseProcess], *, grace_seconds: float) -> None:
    """Terminates ``processes`` (SIGTERM), waits up to ``grace_seconds`` for each to exit,
    then kills (SIGKILL) and reaps those still running.

    All are signalled before any is waited for, so the grace periods overlap.

    Example:
        >>> import multiprocessing, time
        >>> child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,))
        >>> child.start()
        >>> stop_processes([child], grace_seconds=10)
        >>> child.exitcode  # ended by SIGTERM, long before its minute
        -15
    """
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(grace_seconds)
        if process.exitcode is None:
            process.kill()
            process.join()


def die_with_parent(parent_pid: int, *, poll_seconds: float = 1.0) -> None:
    """End this process (SIGKILL) as soon as ``parent_pid``, its parent, is gone.

    A parent killed by SIGKILL runs no clean-up, so its workers would live on and finish
    their tasks as orphans. On Linux the kernel sends the signal (``PR_SET_PDEATHSIG``);
    elsewhere a daemon thread checks every ``poll_seconds`` whether the parent changed. Call
    it first thing in the child: a parent already gone by then ends it at once. (No
    example here: it would bind the process running the examples to its parent.)
    """
    installed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            installed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            installed = False
    # The parent may have died before the prctl: this process is then another's child.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    if not installed:
        threading.Thread(target=_watch_parent, args=(parent_pid, poll_seconds), daemon=True).start()


def _watch_parent(parent_pid: int, poll_seconds: float) -> None:
    stop = threading.Event()
    while not stop.wait(poll_seconds):
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

"""Processes: whether one still runs, and stopping children for good.

:func:`process_alive` tells a killed writer's leftovers from a live writer's files (the
fit cache, dataset staging, :func:`envs.common.files.remove_stale_temporaries`).
:func:`stop_processes` ends child processes (a benchmark's workers) without leaving one
behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

__all__ = ["process_alive", "stop_processes"]


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

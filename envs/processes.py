"""Whether a process still runs: the test that tells a killed writer's leftovers from a
live writer's files (the fit cache here; drpo_rl's dataset staging, which may import envs
but not the other way round)."""

from __future__ import annotations

import os

__all__ = ["process_alive"]


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

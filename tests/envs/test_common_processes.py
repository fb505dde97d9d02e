"""envs.common.processes: stopping children that obey SIGTERM and children that do not."""

import multiprocessing
import signal
import time

from envs.common.processes import process_alive, stop_processes

# fork: the children need nothing from this module's import (Linux, like the suite).
CONTEXT = multiprocessing.get_context("fork")


def _sleep_ignoring_sigterm(ready) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(60)


def test_stop_processes_terminates_then_kills_what_ignores_sigterm():
    ready = CONTEXT.Event()
    stubborn = CONTEXT.Process(target=_sleep_ignoring_sigterm, args=(ready,))
    polite = CONTEXT.Process(target=time.sleep, args=(60,))
    stubborn.start()
    polite.start()
    assert ready.wait(30)
    stop_processes([polite], grace_seconds=60)  # returns once it has exited
    assert polite.exitcode == -signal.SIGTERM
    stop_processes([stubborn], grace_seconds=0.1)
    assert stubborn.exitcode == -signal.SIGKILL
    assert not process_alive(stubborn.pid) and not process_alive(polite.pid)  # reaped

"""Worker processes for the benchmark's runs, and clean interruption by SIGINT or SIGTERM.

A *task* is a picklable callable ``task(item) -> None`` (a module-level function or a
``functools.partial`` of one) that does one item (a grid cell) and keeps its result
itself (the benchmark writes a run record); the backends only run tasks and say when each
item is done. :func:`run_in_workers` does them in spawned processes of this machine (the
default) and :func:`run_on_ray` as Ray tasks (``pip install drpo-rl[ray]``; a local Ray by
default, a cluster with ``address``); both stop every task on an error or an interruption.
:func:`signals_interrupt` turns SIGTERM (like Ctrl-C) into a ``KeyboardInterrupt``, so
that ``drpo-rl bench`` goes through the same clean-up whichever signal stops it. Nothing
here knows what a task does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from envs.common.processes import die_with_parent, stop_processes

#: Where the benchmark's tasks run: this machine's process pool (the default), or Ray.
BACKENDS = ("processes", "ray")

# How long a terminated worker may take to exit before it is killed (SIGTERM's default
# action is immediate; this only matters if something in the worker catches SIGTERM).
WORKER_EXIT_GRACE_SECONDS = 10.0


def run_in_workers(
    task: Callable[[Hashable], None],
    items: Sequence[Hashable],
    workers: int,
    finished: Callable[[Hashable], None],
    *,
    initializer: Callable[[], None] | None = None,
) -> None:
    """Call ``task(item)`` for every item in ``workers`` spawned processes; stop them all on
    any error.

    ``task`` must be picklable (a module-level function or a ``functools.partial`` of one);
    ``finished(item)`` is called in this process as each task ends; ``initializer`` runs
    once in each worker, after the signal set-up below.

    A ProcessPoolExecutor rather than a multiprocessing Pool because it fails (with
    BrokenProcessPool) when a worker dies, where a Pool waits forever for the lost result.
    But neither its ``shutdown(cancel_futures=True)`` nor its context manager stops the
    tasks already in the workers (Python 3.14's ``terminate_workers`` would), so on an
    interruption or an error the workers are terminated here, through the executor's
    process handles. The executor sees them die, fails the remaining futures and cleans
    up its queues, which ``shutdown`` then waits for: no process or semaphore is left
    behind. An error in one task thus stops the others at once rather than after every
    queued task.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(initializer, os.getpid()),
    )
    futures: dict[Future, Hashable] = {}
    try:
        # The executor spawns its workers in submit(), so they are all started here.
        with _signals_deferred(ignored_by_children=True):
            futures = {pool.submit(task, item): item for item in items}
        for future in as_completed(futures):
            future.result()
            finished(futures[future])
    except BaseException:
        # A second Ctrl-C must not break off the clean-up and leave workers running:
        # signals arriving meanwhile are held until it is done.
        with _signals_deferred(ignored_by_children=False):
            # No future.cancel() here: the executor fails the pending futures itself once
            # it sees its workers die (a cancelled one makes it stop half-way, in 3.11).
            # _processes is private, but the only way to the workers before Python 3.14.
            stop_processes(list(pool._processes.values()), grace_seconds=WORKER_EXIT_GRACE_SECONDS)
            pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)


def run_on_ray(
    task: Callable[[Hashable], None],
    items: Sequence[Hashable],
    finished: Callable[[Hashable], None],
    *,
    address: str | None = None,
    initializer: Callable[[], None] | None = None,
) -> None:
    """Call ``task(item)`` for every item as one Ray task each; cancel them all on any error.

    ``ray.init(address=address)`` unless Ray is already initialised: ``None`` starts a
    local Ray on this machine, ``"auto"`` or ``"ray://HOST:10001"`` joins a cluster (its
    nodes must see the same output folder). Each task takes one CPU and runs
    ``initializer`` first; ``finished(item)`` is called here as each task ends, in the
    order they end. An error in a task, or an interruption, cancels the others
    (``ray.cancel(force=True)`` ends their worker processes) and is raised here.
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            "the Ray backend needs Ray: pip install 'drpo-rl[ray]' (or use the default "
            "process pool)"
        ) from err
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
    pending = {remote.remote(task, item, initializer): item for item in items}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ray.get(done[0])
            finished(pending.pop(done[0]))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _ray_task(task: Callable[[Hashable], None], item: Hashable, initializer) -> None:
    # A Ray worker serves many tasks; the initializer is cheap and idempotent.
    if initializer is not None:
        initializer()
    task(item)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[list[int]]:
    """SIGTERM, like SIGINT, raises KeyboardInterrupt (once); yields the signals received.

    SIGTERM's default action ends the process at once, leaving the worker processes
    running as orphans; as an exception it goes through the benchmark's clean-up. Later
    signals are only recorded, so that they cannot break off that clean-up. A SIGINT that
    is ignored (a background job of a non-interactive shell) stays ignored.
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handled.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, interrupt) for signum in handled}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _signals_deferred(*, ignored_by_children: bool) -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends; optionally start children ignoring SIGINT.

    Workers ignore SIGINT because the parent decides what an interruption does: Ctrl-C in
    a terminal signals the whole process group, and each worker would otherwise print a
    traceback. Setting SIGINT to ignored while spawning makes the workers inherit that
    from birth (an ignored signal survives exec), so even a Ctrl-C while they import
    torch is silent. In this process the signal is blocked, not lost: Linux keeps a
    blocked signal pending even while it is ignored, and delivers it to the restored
    handler when the block ends. Children inherit the blocked mask too: the workers'
    initializer unblocks both signals, and a SIGTERM sent before that waits for it.
    """
    held = {signal.SIGINT, signal.SIGTERM}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        # signal.signal works in the main thread only; elsewhere children keep SIGINT.
        if ignored_by_children and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)
        else:
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _init_worker(initializer: Callable[[], None] | None, parent_pid: int) -> None:
    # A parent killed by SIGKILL runs no clean-up: the workers must end by themselves.
    die_with_parent(parent_pid)
    # Spawned inside _signals_deferred: SIGINT stays ignored, SIGTERM must end the worker.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # A spawned worker inherits "spawn" as its default start method, under which every
    # multiprocessing lock (torchrl's storages and writers make a few per task, tqdm one)
    # is registered with the resource tracker until it is freed; a worker terminated on
    # an interruption then makes the tracker warn of "leaked semaphore objects". Tasks
    # start no processes, so "fork" costs nothing here, and its locks are unlinked at once.
    multiprocessing.set_start_method("fork", force=True)
    if initializer is not None:
        initializer()

"""Run a per-chunk function over worker processes, with progress reported as chunks finish.

Workers are started with "spawn": Prefect runs tasks in threads, and forking a process that has
threads can deadlock it. Each worker ends itself when the process that started it dies, even by
SIGKILL, so no worker outlives its run. A spawned worker imports only the module of the function it runs, so
chunk functions live in modules that import nothing heavier than Pillow, NumPy and pyarrow.
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

Item = TypeVar("Item")


def default_workers() -> int:
    """One worker per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def chunked(items: Sequence[Item], chunk_size: int) -> list[Sequence[Item]]:
    """Split a sequence into consecutive chunks of at most chunk_size items."""
    return [items[start : start + chunk_size] for start in range(0, len(items), chunk_size)]


def map_chunks(
    function: Callable[..., Any],
    chunks: Sequence[Any],
    workers: int,
    extra_arguments: tuple = (),
    on_progress: Callable[[int, int, float], None] | None = None,
    max_in_flight: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (chunk index, function(chunk, *extra_arguments)) as chunks finish, in any order.

    With one worker, or one chunk, everything runs in this process: no start-up cost and
    simpler tracebacks. on_progress receives (chunks done, chunks total, seconds elapsed).
    max_in_flight bounds the chunks submitted but not yet yielded, so results wait in memory
    only that many at a time however slowly the caller consumes them; None submits all at once.
    """
    started = time.perf_counter()
    total = len(chunks)
    if workers <= 1 or total <= 1:
        for index, chunk in enumerate(chunks):
            yield index, function(chunk, *extra_arguments)
            if on_progress:
                on_progress(index + 1, total, time.perf_counter() - started)
        return
    pool = shared_pool(workers)
    window = total if max_in_flight is None else max(1, max_in_flight)
    pending = iter(enumerate(chunks))
    futures: dict = {}

    def submit_next() -> None:
        for index, chunk in itertools.islice(pending, 1):
            futures[pool.submit(function, chunk, *extra_arguments)] = index

    done_count = 0
    try:
        # Inside the try: a worker that dies at once breaks the pool while chunks are still being
        # submitted, and submit itself then raises BrokenProcessPool.
        for _ in range(window):
            submit_next()
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                index = futures.pop(future)
                result = future.result()
                submit_next()
                done_count += 1
                yield index, result
                if on_progress:
                    on_progress(done_count, total, time.perf_counter() - started)
    except BrokenProcessPool:
        # A worker died (out of memory, a crash in a native decoder); start afresh next time.
        with _POOLS_LOCK:
            _POOLS.pop(workers, None)
        raise
    finally:
        for future in futures:
            future.cancel()


# How often a worker checks that the process that started it is still alive, in seconds.
PARENT_CHECK_SECONDS = 1.0

_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_STARTED_WORKERS: list[ProcessPoolExecutor] = []  # Those of start_worker_process, shut down at exit too.


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of this process, one per worker count.

    Starting workers costs about a second; hashing and decoding in one ingest share them.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(), PARENT_CHECK_SECONDS),
            )
            _POOLS[workers] = pool
        return pool


def start_worker_process(imports: tuple[str, ...]) -> ProcessPoolExecutor:
    """One spawned worker process that imports the named modules as it starts, and ends with this one.

    The imports run in the worker right away, on whichever core is free, rather than in this
    process, where an import holds the interpreter lock against every other import.
    """
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), PARENT_CHECK_SECONDS, imports),
    )
    pool.submit(int)  # The pool starts its process at the first task.
    _STARTED_WORKERS.append(pool)
    return pool


def _start_worker(parent_pid: int, check_seconds: float, imports: tuple[str, ...]) -> None:
    """Worker initializer of start_worker_process: watch the parent, then import the modules."""
    exit_with_parent(parent_pid, check_seconds)
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception:  # The task that needs it imports it again and reports the problem there.
            return


def exit_with_parent(parent_pid: int, check_seconds: float) -> None:
    """Worker initializer: end this worker once the process that started it is gone.

    A parent killed with SIGKILL cannot shut its pool down, and its workers would live on as
    orphans holding memory; a worker whose parent died is handed to another parent, which a
    daemon thread notices within check_seconds.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(check_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="visionflow-parent-watch", daemon=True).start()


def stop_worker_pools() -> None:
    """End the worker processes of every pool this process started, now, without waiting for them.

    For a command that has finished (visionflow/cli/entry_point.py): its workers are idle, and
    letting each tear its modules down costs seconds. Other processes (a Dask cluster's) are
    left to their own exit handlers.
    """
    with _POOLS_LOCK:
        pools = [*_POOLS.values(), *_STARTED_WORKERS]
        _POOLS.clear()
        _STARTED_WORKERS.clear()
    for pool in pools:
        # concurrent.futures keeps a pool's processes by pid. Were that ever gone, the shutdown
        # below would still end them, only by waiting for each to finish its teardown.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
        # Its workers gone, the pool's manager thread ends at once; joined, it has released the
        # pool's queues (named semaphores) before this process ends, or the resource tracker
        # would find a semaphore unlinked but never unregistered and warn.
        pool.shutdown(wait=True, cancel_futures=True)


@atexit.register
def _shut_down_pools() -> None:
    for pool in [*_POOLS.values(), *_STARTED_WORKERS]:
        pool.shutdown(wait=False, cancel_futures=True)

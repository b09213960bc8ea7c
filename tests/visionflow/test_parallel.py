"""Worker pools: chunks run in processes, at most a bounded number wait in memory, a dead worker is reported."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from visionflow.parallel import chunked, map_chunks, shared_pool


def mark_started(chunk: list[int], folder: str) -> list[int]:
    """Leave a file per chunk when a worker starts it, then take a moment, then return it doubled."""
    Path(folder, f"chunk-{chunk[0]}").touch()
    time.sleep(0.05)
    return [value * 2 for value in chunk]


def die(chunk: list[int]) -> list[int]:
    """A worker that dies as a crash in a native decoder would: no exception, no result."""
    os._exit(3)


def test_chunks_are_consecutive_and_cover_everything():
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunked([], 3) == []


def test_one_worker_runs_in_this_process_in_order_with_progress(tmp_path):
    seen = []
    chunks = chunked(list(range(6)), 2)
    results = list(map_chunks(mark_started, chunks, 1, (str(tmp_path),), on_progress=lambda *args: seen.append(args)))
    assert results == [(0, [0, 2]), (1, [4, 6]), (2, [8, 10])]
    assert [(done, total) for done, total, _ in seen] == [(1, 3), (2, 3), (3, 3)]


def test_processes_return_every_chunk_once(tmp_path):
    chunks = chunked(list(range(40)), 4)
    results = dict(map_chunks(mark_started, chunks, 2, (str(tmp_path),)))
    assert sorted(results) == list(range(10))
    assert [value for index in range(10) for value in results[index]] == [value * 2 for value in range(40)]


def test_a_slow_consumer_never_has_more_than_the_limit_of_chunks_submitted_ahead(tmp_path):
    limit = 2
    chunks = chunked(list(range(12)), 1)
    for yielded, _ in enumerate(map_chunks(mark_started, chunks, 2, (str(tmp_path),), max_in_flight=limit), start=1):
        time.sleep(0.3)  # Long enough for the workers to start everything they were given.
        started = len(list(tmp_path.iterdir()))
        assert started <= yielded + limit, f"{started} chunks started after {yielded} were consumed"
    assert len(list(tmp_path.iterdir())) == 12


def test_without_a_limit_every_chunk_is_submitted_at_once(tmp_path):
    chunks = chunked(list(range(8)), 1)
    iterator = map_chunks(mark_started, chunks, 2, (str(tmp_path),))
    next(iterator)
    time.sleep(0.6)
    assert len(list(tmp_path.iterdir())) == 8, "the test above can only fail if a limit is what holds chunks back"
    assert len(list(iterator)) == 7


def test_a_dead_worker_raises_and_the_next_call_gets_a_fresh_pool(tmp_path):
    broken = shared_pool(2)
    with pytest.raises(BrokenProcessPool):
        list(map_chunks(die, [[1], [2], [3]], 2))
    assert shared_pool(2) is not broken, "a broken pool is never handed out again"
    assert dict(map_chunks(mark_started, [[1], [2]], 2, (str(tmp_path),))) == {0: [2], 1: [4]}


def worker_pid(_: int) -> int:
    """The worker's process id, after a moment, so that both workers get work."""
    time.sleep(0.2)
    return os.getpid()


def alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting to be reaped has ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\tZ" not in next(line for line in status if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_workers_end_when_the_process_that_started_them_is_killed(tmp_path):
    script = (
        "import sys, time\n"
        "from tests.visionflow.test_parallel import worker_pid\n"
        "from visionflow.parallel import shared_pool\n"
        "pids = set(shared_pool(2).map(worker_pid, range(6)))\n"
        "print(' '.join(map(str, sorted(pids))), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert pids and all(alive(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)], "workers outlived the process killed with SIGKILL"


def imported(module: str) -> bool:
    """Whether the calling process has imported module (run in a worker)."""
    return module in sys.modules


def test_a_started_worker_imports_its_modules_before_any_task(tmp_path):
    from visionflow.parallel import start_worker_process

    worker = start_worker_process(("colorsys",))
    try:
        assert worker.submit(imported, "colorsys").result(timeout=60) is True
        assert worker.submit(imported, "tensorflow").result(timeout=60) is False, "spawned: nothing else"
        assert worker.submit(os.getpid).result() != os.getpid()
    finally:
        worker.shutdown(wait=True)


def test_a_module_that_fails_to_import_leaves_the_worker_usable():
    from visionflow.parallel import start_worker_process

    worker = start_worker_process(("no_such_module_anywhere", "colorsys"))
    try:
        assert worker.submit(imported, "no_such_module_anywhere").result(timeout=60) is False
        assert worker.submit(sum, [1, 2]).result() == 3
    finally:
        worker.shutdown(wait=True)


def test_stopping_the_pools_ends_their_workers_and_the_next_map_starts_afresh(tmp_path):
    from visionflow.parallel import start_worker_process, stop_worker_pools

    started = start_worker_process(("colorsys",))
    started_pids = set(started.submit(os.getpid).result(timeout=60) for _ in range(2))
    pool = shared_pool(2)
    pool_pids = set(pool.submit(os.getpid).result(timeout=60) for _ in range(4))
    stop_worker_pools()
    for pid in started_pids | pool_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # Gone: terminated and joined, not left to tear down.
    assert shared_pool(2) is not pool
    assert dict(map_chunks(mark_started, chunked([1, 2, 3, 4], 2), 2, (str(tmp_path),))) == {0: [2, 4], 1: [6, 8]}


def test_stopping_the_pools_leaves_other_children_alone():
    import multiprocessing

    from visionflow.parallel import stop_worker_pools

    other = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))  # As a Dask worker is.
    other.start()
    try:
        working = shared_pool(2)
        worker_pids = {working.submit(os.getpid).result(timeout=60) for _ in range(4)}
        idle = shared_pool(3)  # A pool that never started a worker.
        stop_worker_pools()
        assert other.is_alive(), "only the pools' own workers are ended"
        for pid in worker_pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        # The pool that never started is shut down too, and no longer handed out.
        with pytest.raises(RuntimeError, match="shutdown"):
            idle.submit(os.getpid)
        assert shared_pool(3) is not idle
    finally:
        other.kill()
        other.join()
        stop_worker_pools()

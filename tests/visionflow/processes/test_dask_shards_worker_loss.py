"""A worker of a real local Dask cluster SIGKILLed mid-stage: every shard still yields once, and the
stage's log names the lost worker (tests/flows/test_score_dask_hosts.py loses a whole host)."""

from __future__ import annotations

import logging
import os
import re
import signal
import time

import pytest

from visionflow.processes.dask_shards import DaskConfig, cluster_runner, map_shards

pytestmark = [pytest.mark.dask, pytest.mark.usefixtures("prefect_server")]

SHARDS = 12
TWO_WORKERS = DaskConfig(workers=2)


def slow_square(chunk: list[int], seconds: float) -> list[int]:
    time.sleep(seconds)  # Long enough that a worker still holds shards when it is killed.
    return [value * value for value in chunk]


def busy_worker(client, holding: int = 2) -> str | None:
    """A worker holding at least holding shards (one running, one queued), or None."""
    return next((worker for worker, keys in client.processing().items() if len(keys) >= holding), None)


def test_a_worker_killed_mid_stage_is_reported_and_its_shards_run_again(caplog):
    client = cluster_runner(TWO_WORKERS).client
    results = {}
    lost = None
    with caplog.at_level(logging.INFO, logger="visionflow.processes.dask_shards"):
        for index, squares in map_shards("square", slow_square, [[n] for n in range(SHARDS)], (0.5,), TWO_WORKERS):
            results[index] = squares
            deadline = time.monotonic() + 30
            while lost is None and time.monotonic() < deadline:
                lost = busy_worker(client)
                if lost is not None:
                    os.kill(client.run(os.getpid, workers=[lost])[lost], signal.SIGKILL)
                time.sleep(0.01)
        time.sleep(1.0)  # The restarted worker's arrival, reported on the client's own thread.

    assert lost is not None, "no worker ever held two shards"
    assert results == {index: [index * index] for index in range(SHARDS)}
    messages = [record.getMessage() for record in caplog.records]
    left = [re.search(r"the (\d+) shards it held run again", text) for text in messages if lost in text]
    assert any(found and int(found.group(1)) >= 1 for found in left), messages
    assert any("joined the cluster during the square shards" in text for text in messages), messages

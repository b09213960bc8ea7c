"""Shards on a real local Dask cluster: results, progress, failures, and settings that cannot work."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from visionflow.errors import BadInputError
from visionflow.processes.dask_shards import DaskConfig, map_shards

from tests.postgres_helpers import free_port

pytestmark = [pytest.mark.dask, pytest.mark.usefixtures("prefect_server")]


def doubled_with_process(chunk: list[int], factor: int) -> tuple[list[int], int]:
    return [value * factor for value in chunk], os.getpid()


def refuse_three(chunk: list[int]) -> list[int]:
    if 3 in chunk:
        raise ValueError("three is not welcome")
    return chunk


def test_every_shard_runs_once_on_the_cluster_with_progress():
    chunks = [[index, index + 100] for index in range(9)]
    progress = []
    results = dict(
        map_shards(
            "double", doubled_with_process, chunks, (2,), DaskConfig(workers=2), lambda *seen: progress.append(seen)
        )
    )
    assert sorted(results) == list(range(9))
    assert all(results[index][0] == [2 * index, 2 * index + 200] for index in range(9))
    assert {pid for _, pid in results.values()} - {os.getpid()}, "shards ran in worker processes"
    assert [done for done, total, _ in progress] == list(range(1, 10)) and {total for _, total, _ in progress} == {9}


def test_a_failing_shard_stops_the_stage_with_its_error():
    with pytest.raises(ValueError, match="three is not welcome"):
        list(map_shards("refuse", refuse_three, [[1], [2], [3], [4]], (), DaskConfig(workers=2)))


def test_an_address_and_a_local_cluster_together_are_refused():
    with pytest.raises(ValidationError, match="either dask.address"):
        DaskConfig(address="tcp://127.0.0.1:8786", workers=2)


def test_an_unreachable_scheduler_is_an_error_that_names_it():
    address = f"tcp://127.0.0.1:{free_port()}"
    config = DaskConfig(address=address, connect_timeout_seconds=2)
    with pytest.raises(BadInputError, match=f"cannot reach a Dask worker at {address}"):
        list(map_shards("nowhere", refuse_three, [[1]], (), config))


def test_large_images_make_smaller_shards():
    config = DaskConfig(files_per_shard=4096)
    assert config.files_per_shard_of(32 * 32 * 3) == 4096
    assert config.files_per_shard_of(224 * 224 * 3) == 445
    assert not config.enabled and DaskConfig(workers=1).enabled and DaskConfig(address="tcp://x:1").enabled


def test_without_a_prefect_server_for_the_workers_a_cluster_is_refused():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(BadInputError, match="PREFECT_API_URL"):
        list(map_shards("unreported", refuse_three, [[1]], (), DaskConfig(workers=3)))

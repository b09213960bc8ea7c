"""`visionflow deploy`: the deployments registered with a work pool on a server, by module path."""

from __future__ import annotations

import os
import subprocess

import pytest

from visionflow.deployments.deploy import deploy_to_pool, ensure_process_pool
from visionflow.deployments.settings import ServeConfig

from tests.conftest import VISIONFLOW


@pytest.mark.usefixtures("prefect_server")
def test_deployments_are_registered_with_a_new_process_pool_by_module_path():
    from prefect.client.orchestration import get_client

    ids = deploy_to_pool("team-pool", ServeConfig(train_cron="0 5 * * *"))
    assert len(ids) == 8  # train, score-drops, score, review, ingest, evaluate, promote, rollback.
    assert ensure_process_pool("team-pool") is False, "the pool exists now"
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("team-pool")
        deployments = {
            client.read_deployment(deployment_id).name: client.read_deployment(deployment_id) for deployment_id in ids
        }
    assert pool.type == "process"
    assert deployments["train"].work_pool_name == "team-pool"
    assert deployments["train"].entrypoint == "visionflow.flows.train.train_flow"
    assert deployments["score-drops"].entrypoint == "visionflow.flows.score_drops.score_drops_flow"
    assert deployments["review"].entrypoint == "visionflow.flows.review.review_flow"
    assert deployments["train"].schedules[0].schedule.cron == "0 5 * * *"


@pytest.mark.usefixtures("prefect_server")
def test_a_bad_cron_exits_2_saying_what_a_cron_is_and_creates_no_pool():
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [*VISIONFLOW, "deploy", "--pool", "cron-pool", "--train-cron", "every monday"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("visionflow: train cron 'every monday' is not a cron expression: give five fields")
    assert "Traceback" not in result.stderr
    with get_client(sync_client=True) as client:
        assert "cron-pool" not in {pool.name for pool in client.read_work_pools()}


def test_deploy_without_a_server_address_exits_2_saying_what_to_set():
    environment = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    result = subprocess.run([*VISIONFLOW, "deploy"], capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 2 and "PREFECT_API_URL is not set" in result.stderr

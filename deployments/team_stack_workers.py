"""The work side of the team stack: `visionflow deploy` through the balancer, and the process workers.

A stack runs one or more workers on its pool (`team_stack up --workers N`), each a `prefect worker
start` with a name of its own, so losing one leaves the others serving. The score-drops deployment
may then run as many runs at once as there are workers: each run claims drops one at a time by
renaming them into drops/processing/, so runs that share a burst never score a drop twice.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from visionflow.deployments.team_stack_config import TeamStackConfig, client_environment
from visionflow.deployments.team_stack_pieces import spawn_ready
from visionflow.deployments.team_stack_processes import ProcessRecord, run_step

DEPLOY_SECONDS = 300.0  # `visionflow deploy` imports every flow, TensorFlow included.
WORKER_NAME = "visionflow-team-worker"  # The first worker's; the second is visionflow-team-worker-2, ...
SCORE_DROPS_DEPLOYMENT = "score-drops/score-drops"  # flow/deployment, as `visionflow deploy` names it.


def deploy(config: TeamStackConfig) -> str:
    """`visionflow deploy` through the balancer, once per state folder, then score-drops' concurrency
    matched to the workers; returns deploy's JSON summary line."""
    marker = config.state / "deployed.json"
    if not marker.exists():
        environment = client_environment(config, config.state / "prefect" / "deploy")
        command = [sys.executable, "-m", "visionflow", "deploy", "--pool", config.pool, "--json",
                   *config.deploy_options]  # fmt: skip
        marker.write_text(run_step("visionflow deploy", command, environment, config.logs / "deploy.log",
                                   DEPLOY_SECONDS))  # fmt: skip
    match_scoring_to_workers(config)
    return marker.read_text()


def match_scoring_to_workers(config: TeamStackConfig) -> None:
    """Let as many score-drops runs go at once as the pool has workers.

    `visionflow deploy` allows one at a time, which suits `visionflow serve` on one machine: a burst
    queues up rather than loading the model in many processes. A team that runs more workers runs
    them to score more at once; each run claims drops one by one with an atomic rename, so two runs
    share a burst without scoring a drop twice, and each loads the model once for all its drops.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: config.api_url}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(SCORE_DROPS_DEPLOYMENT)
        limit = deployment.global_concurrency_limit
        if limit is None or limit.limit != config.workers:
            client.update_deployment(deployment.id, DeploymentUpdate(concurrency_limit=config.workers))


def worker_name(piece: str) -> str:
    """The name a worker piece ("worker", "worker-2", ...) goes by in its pool."""
    return WORKER_NAME + piece.removeprefix("worker")


def start_worker(config: TeamStackConfig, piece: str) -> ProcessRecord:
    """A process worker on the pool under a name of its own, running flows with the team's home and ledger."""
    environment = client_environment(config, config.state / "prefect" / piece)
    environment.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")  # Pick up a new run within 2 s, not 10 s.
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", config.pool, "--name", worker_name(piece),
               "--no-create-pool-if-not-found", "--install-policy", "never"]  # fmt: skip
    log = config.logs / f"{piece}.log"
    since = datetime.now(UTC)
    return spawn_ready(piece, command, environment, log, lambda _: worker_online(config, worker_name(piece), since))


def worker_online(config: TeamStackConfig, name: str, since: datetime) -> bool:
    """True when the worker called name has sent its pool a heartbeat since `since`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: config.api_url}), get_client(sync_client=True) as client:
            workers = client.read_workers_for_work_pool(config.pool)
    except Exception:  # The pool or the API is not there yet.
        return False
    return any(
        worker.name == name and worker.last_heartbeat_time and worker.last_heartbeat_time >= since for worker in workers
    )

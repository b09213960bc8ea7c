"""`visionflow deploy`: register visionflow's deployments with a shared Prefect server and work pool.

For a team that runs one Prefect server (PostgreSQL-backed) and workers on other machines: every
machine with a worker installs visionflow (`pip install -e .` of this repository, so each model
records the commit that trained it), and the deployments name their flows by module
("visionflow.flows.train.train_flow"), so no code is shipped with them. A process work pool is
created when the named one does not exist yet. Then, on each worker machine:

    PREFECT_API_URL=http://prefect.example.internal:4200/api prefect worker start --pool visionflow

Flow runs execute on the workers with their own VISIONFLOW_HOME (set it in the worker's
environment, for example on a shared file system, so the registry and the ledger are shared).
"""

from __future__ import annotations

from visionflow.deployments.settings import ServeConfig


def ensure_process_pool(pool: str) -> bool:
    """Create a process work pool named pool unless it exists; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return False
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
            return True


def deploy_to_pool(pool: str, config: ServeConfig) -> list[str]:
    """Register every deployment with the work pool on the current PREFECT_API_URL; return their ids."""
    from prefect import deploy

    from visionflow.deployments.definitions import all_deployments

    deployments = all_deployments(config)  # First: a setting they cannot take stops before the server changes.
    ensure_process_pool(pool)
    ids = deploy(
        *deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False,
        ignore_warnings=True,
    )  # fmt: skip
    return [str(deployment_id) for deployment_id in ids]

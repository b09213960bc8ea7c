"""A team's Prefect, for real: a PostgreSQL-backed server, `visionflow deploy`, and a process worker.

The set-up docs/operations/team.md describes for a team, run end to end on one machine: `prefect server start`
on a fresh PostgreSQL database, `visionflow deploy --pool` against it, `prefect worker start
--pool` with its own VISIONFLOW_HOME, then the `train` deployment on a tiny image folder and the
`score` deployment on a small drop, each run by that worker. The test reads what the runs
produced (the registered champion, the drop's predictions and rejections, the runs' artifacts)
and finds both runs in the database itself. About 90 s on two idle cores, over two minutes on busy ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from visionflow.deployments.settings import DEPLOYMENT_NAMES
from visionflow.processes.temporary_server import answers_health_check

from tests.conftest import VISIONFLOW, write_image
from tests.postgres_helpers import SUPERUSER, free_port

pytestmark = pytest.mark.postgres

POOL = "team-pool"
SERVER_START_TIMEOUT_SECONDS = 120  # The first start creates Prefect's tables in PostgreSQL.
DEPLOY_TIMEOUT_SECONDS = 180  # `visionflow deploy` imports the flows, TensorFlow included.
TRAIN_TIMEOUT_SECONDS = 240  # The worker starts a process that imports TensorFlow, then ingests and trains.
SCORE_TIMEOUT_SECONDS = 150
STOP_TIMEOUT_SECONDS = 60  # How long a process may take to stop on SIGTERM before it is killed.
SECOND_STOP_TIMEOUT_SECONDS = 10  # The same after a second SIGTERM, where one is sent.
DROP_IMAGES = ("a.png", "nested/b.png", "nested/deeper/c.jpg", "d e ü.png")


def offline_environment(prefect_home: Path) -> dict[str, str]:
    """The environment of a process the test starts: offline, with a Prefect home of its own.

    The test session points PREFECT_HOME at its own temporary home and may have a
    PREFECT_API_URL set, so both are replaced: the server, the deployer and the worker each act
    as if on a machine of their own, sharing only the server's address.
    """
    prefect_home.mkdir(parents=True, exist_ok=True)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    return {**environment, "PREFECT_HOME": str(prefect_home), "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONFAULTHANDLER": "1"}  # fmt: skip


def process_group_members(group: int) -> list[int]:
    """The processes still alive in a process group, found in /proc (zombies excluded)."""
    members = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:  # The process ended while being read.
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(status.parent.name))
    return members


@contextlib.contextmanager
def running(
    command: list[str], environment: dict[str, str], log_path: Path, leftovers: list[int], second_sigterm: bool = False
) -> Iterator:
    """Run command in a process group of its own while the block runs; stop it on the way out.

    SIGTERM first, as an operator stops a server or a worker; SIGKILL to the whole group when it
    does not stop in time or leaves children behind (the server's web process, the worker's flow
    runs). Whatever was still alive after the clean stop is added to leftovers, so the test can
    fail on it after everything has been killed.

    second_sigterm: when the first SIGTERM has not stopped the process in time, send another, as
    an operator would. Prefect's worker turns the first into SIGINT and a second into SIGKILL of
    itself. Its shutdown after the first sometimes hangs with its event loop and every thread idle
    (seen with Prefect 3.9 on this suite's 2-core machines, loaded or not), and a second SIGTERM
    is Prefect's own way out, the one docs/operations/team.md tells operators to use.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            if second_sigterm:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=SECOND_STOP_TIMEOUT_SECONDS)
        if process.poll() is None:
            leftovers.append(process.pid)
            # SIGABRT makes Python's fault handler (PYTHONFAULTHANDLER in the environment) write
            # every thread's stack to the log, so a failure shows where the process hung.
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        time.sleep(1)  # Children that were told to stop get a moment to finish.
        remaining = process_group_members(process.pid)
        leftovers.extend(remaining)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_tail(path: Path, characters: int = 4000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no log)"


def wait_until_healthy(api_url: str, server: subprocess.Popen, log_path: Path) -> None:
    """Wait for the server's health check; fail with its log if it exits or stays silent."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the Prefect server exited with {server.returncode}:\n{log_tail(log_path)}"
        if answers_health_check(api_url):
            return
        time.sleep(0.5)
    raise AssertionError(f"no answer from {api_url} in {SERVER_START_TIMEOUT_SECONDS} s:\n{log_tail(log_path)}")


def write_training_images(root: Path) -> Path:
    """Two plainly different classes, enough of each for every split's contract minimum."""
    for index in range(60):
        write_image(root / "red" / f"{index}.png", (220, 30, 30), seed=index)
        write_image(root / "blue" / f"{index}.png", (30, 30, 220), seed=1000 + index)
    return root


def write_drop(root: Path) -> Path:
    """A small drop: images at several depths, one with spaces and unicode, and a file that is no image."""
    for index, name in enumerate(DROP_IMAGES):
        write_image(root / name, (220, 30, 30) if index % 2 == 0 else (30, 30, 220), seed=5000 + index)
    (root / "notes.txt").write_text("not an image\n")
    return root


def run_deployment_and_wait(api_url: str, name: str, parameters: dict, timeout: float):
    """Start a run of the deployment name on the server, as the UI does, and wait for its end."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return run_deployment(name, parameters=parameters, timeout=timeout)


def artifact_keys(api_url: str, flow_run_id) -> set[str]:
    """The keys of the artifacts the server holds for one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    of_the_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=of_the_run)
    return {artifact.key for artifact in artifacts if artifact.key}


def stored_flow_runs(server, database: str) -> dict[str, tuple[str, str, str | None]]:
    """Every flow run in the server's PostgreSQL database: id to (flow name, state type, deployment name)."""
    import psycopg  # Imported here, as in tests/postgres_helpers.py: only the PostgreSQL tests need it.

    query = """
        SELECT flow_run.id::text, flow.name, flow_run.state_type::text, deployment.name
        FROM flow_run JOIN flow ON flow.id = flow_run.flow_id
        LEFT JOIN deployment ON deployment.id = flow_run.deployment_id
    """
    with psycopg.connect(host=server.host, port=server.port, user=SUPERUSER, dbname=database) as connection:
        return {row[0]: tuple(row[1:]) for row in connection.execute(query).fetchall()}


def read_dataset(folder: Path, columns: list[str]) -> dict[str, list]:
    """A drop output folder's committed Parquet parts, as columns of Python values."""
    parts = sorted(folder.glob("*.parquet"))
    assert parts, f"no Parquet part in {folder}"
    return pq.ParquetDataset(parts).read(columns=columns).to_pydict()


def test_a_postgres_backed_server_runs_the_deployments_on_a_process_worker(postgres_server, tmp_path):
    database = postgres_server.create_database("prefect")
    incoming = tmp_path / "incoming"  # The only folder the worker's runs may read.
    images = write_training_images(incoming / "images")
    drop = write_drop(incoming / "drop-2026-12-01")
    team_home = tmp_path / "team-home"  # The workers' VISIONFLOW_HOME: the registry and the ledger.
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    leftovers: list[int] = []

    server_environment = {
        **offline_environment(tmp_path / "server-prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres_server.url(database, driver="asyncpg"),
    }
    # No scheduler: the deployments' own schedules (weekly training, scoring the inbox) must not
    # start runs that would compete with the test's on the worker.
    server_command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                      str(port), "--no-ui", "--analytics-off", "--no-scheduler"]  # fmt: skip
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    with running(server_command, server_environment, server_log, leftovers) as server:
        wait_until_healthy(api_url, server, server_log)

        deployer = {**offline_environment(tmp_path / "deployer-prefect"), "PREFECT_API_URL": api_url,
                    "VISIONFLOW_HOME": str(tmp_path / "deployer-home")}  # fmt: skip
        deployed = subprocess.run([*VISIONFLOW, "deploy", "--pool", POOL, "--json"], capture_output=True, text=True,
                                  env=deployer, timeout=DEPLOY_TIMEOUT_SECONDS, check=False)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr[-4000:]
        summary = json.loads(deployed.stdout.strip().splitlines()[-1])
        assert summary["pool"] == POOL and len(summary["deployment_ids"]) == len(DEPLOYMENT_NAMES)

        worker_environment = {
            **offline_environment(tmp_path / "worker-prefect"),
            "PREFECT_API_URL": api_url,
            "VISIONFLOW_HOME": str(team_home),
            "VISIONFLOW_ALLOWED_ROOTS": str(incoming),
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # Pick up a new run at once, not after Prefect's 10 s.
        }
        # The worker must find the pool `visionflow deploy` created: it may not create one itself.
        worker_command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", "team-worker",
                          "--no-create-pool-if-not-found", "--install-policy", "never"]  # fmt: skip
        with running(worker_command, worker_environment, worker_log, leftovers, second_sigterm=True) as worker:
            train = run_deployment_and_wait(
                api_url,
                "train/train",
                {
                    "data": str(images),
                    "preset": "tiny",
                    "ingest": {"scan": {"workers": 1}, "decode": {"image_size": 12, "workers": 1}},
                    # Any model may be champion: the test is about the plumbing, not the accuracy.
                    "gate": {"min_test_accuracy": 0.0, "min_class_recall": 0.0},
                },
                TRAIN_TIMEOUT_SECONDS,
            )
            assert train.state.is_completed(), f"{train.state!r}\nworker log:\n{log_tail(worker_log)}"
            score = run_deployment_and_wait(
                api_url,
                "score/score",
                {"drop": str(drop), "config": {"scan": {"workers": 1}, "score": {"workers": 1}}},
                SCORE_TIMEOUT_SECONDS,
            )
            assert score.state.is_completed(), f"{score.state!r}\nworker log:\n{log_tail(worker_log)}"
            assert worker.poll() is None, "the worker must keep polling between runs"
            train_artifacts, score_artifacts = artifact_keys(api_url, train.id), artifact_keys(api_url, score.id)
    assert not leftovers, (
        f"processes left running after SIGTERM: {leftovers}\nworker log:\n{log_tail(worker_log)}"
        f"\nserver log:\n{log_tail(server_log)}"
    )

    # Both runs went through the pool's worker, which starts each run as a process of its own.
    for run in (train, score):
        assert run.work_pool_name == POOL and run.infrastructure_pid, run
    assert {"train-summary", "evaluation-metrics", "model-registry"} <= train_artifacts
    assert "scoring-report" in score_artifacts

    # The worker's home holds the new champion, trained on the two classes.
    champion = json.loads((team_home / "models" / "champion.json").read_text())
    assert champion["version"] == "v0001"
    metadata = json.loads((team_home / "models" / "v0001" / "metadata.json").read_text())
    assert metadata["class_names"] == ["blue", "red"] and metadata["input_shape"] == [12, 12, 3]

    # One prediction per image of the drop, by that champion, and the text file rejected.
    outputs = team_home / "predictions" / drop.name
    predictions = read_dataset(outputs / "predictions", ["path", "label", "model_version"])
    assert sorted(predictions["path"]) == sorted(DROP_IMAGES)
    assert set(predictions["label"]) <= {"blue", "red"} and set(predictions["model_version"]) == {"v0001"}
    assert read_dataset(outputs / "rejections", ["path"])["path"] == ["notes.txt"]

    # The server kept its state in PostgreSQL: both runs are there, completed, after it stopped.
    runs = stored_flow_runs(postgres_server, database)
    assert runs[str(train.id)] == ("train", "COMPLETED", "train")
    assert runs[str(score.id)] == ("score", "COMPLETED", "score")
    assert ("ingest", "COMPLETED", None) in runs.values(), "training's ingest subflow is recorded there too"

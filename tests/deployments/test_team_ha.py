"""Prefect in high availability, for real: the team stack loses an API server in the middle of each run.

`python -m visionflow.deployments.team_stack up` brings up PostgreSQL, Redis, two API servers
behind HAProxy, the services, `visionflow deploy`, a worker and the inbox watcher. A `train` run
and a `score-drops` run start through the balancer; once each is running, one API server is
SIGKILLed (api-1 during training; `up` then brings it back; api-2 during scoring, left dead). Both
runs must complete, a drop put into the inbox after the second kill must still be scored by the
run its event triggers (events travel through Redis to the services), and PostgreSQL must hold
the deployments and every run, completed. `down` must then leave no process and no port behind.
About three minutes on two idle cores.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from visionflow.deployments.settings import DEPLOYMENT_NAMES

from tests.deployments.team_ha_helpers import (
    assert_nothing_left,
    free_base_port,
    kill_piece,
    put_drop,
    query_prefect_database,
    read_run,
    require_stack_tools,
    run_stack,
    stack_logs,
    start_run,
    take_down,
    wait_for_run,
    write_training_images,
)

pytestmark = pytest.mark.team_ha

RUN_SECONDS = 300  # The longest a run may take, kill and failover included, on two busy cores.
TRAIN_PARAMETERS_BASE = {
    "preset": "tiny",
    "ingest": {"scan": {"workers": 1}, "decode": {"image_size": 12, "workers": 1}},
    "gate": {"min_test_accuracy": 0.0, "min_class_recall": 0.0},  # Any model may be champion: plumbing only.
}


UNFINISHED_TASK_RUNS = """
    SELECT task_run.name, task_run.state_type::text, flow_run.name FROM task_run
    JOIN flow_run ON flow_run.id = task_run.flow_run_id
    WHERE task_run.state_type IS NULL OR task_run.state_type::text NOT IN ('COMPLETED', 'CACHED')
"""


def running(run) -> bool:
    return bool(run.state and run.state.is_running())


def final(run) -> bool:
    return bool(run.state and run.state.is_final())


def run_through_a_kill(api_url: str, deployment: str, parameters: dict, state: Path, victim: str) -> dict:
    """Start a run, SIGKILL the API server victim once the run is running, and wait for the run's end."""
    created = time.monotonic()
    flow_run = start_run(api_url, deployment, parameters)
    wait_for_run(api_url, flow_run.id, running, RUN_SECONDS, state)
    killed_at = time.monotonic()
    kill_piece(state, victim)
    finished = wait_for_run(api_url, flow_run.id, final, RUN_SECONDS, state)
    done_at = time.monotonic()
    assert finished.state.is_completed(), f"{finished.state!r}\n{stack_logs(state)}"
    run_time = finished.total_run_time.total_seconds()
    print(f"{deployment}: running after {killed_at - created:.1f} s, {victim} killed, completed "
          f"{done_at - killed_at:.1f} s later ({run_time:.1f} s of run time)")  # fmt: skip
    return {"id": str(finished.id), "run": finished}


def test_runs_survive_the_loss_of_an_api_server():
    require_stack_tools()
    # Under /tmp with a+x rather than pytest's tmp_path: as root, user postgres must reach its data folder.
    root = Path(tempfile.mkdtemp(prefix="visionflow-team-ha-"))
    os.chmod(root, 0o755)
    home, state, incoming = root / "home", root / "state", root / "incoming"
    images = write_training_images(incoming / "images")
    base = free_base_port()
    location = ["--home", str(home), "--state", str(state)]
    started = time.monotonic()
    try:
        result, up = run_stack("up", *location, "--base-port", str(base), "--settle-seconds", "300",
                               "--allow-root", str(incoming))  # fmt: skip
        assert result.returncode == 0, f"{result.stderr[-3000:]}\n{stack_logs(state)}"
        print(f"up: {up['seconds']} s")
        assert [piece["name"] for piece in up["pieces"]] == [
            "postgres", "redis", "api-1", "api-2", "services", "balancer", "worker", "inbox-watcher"
        ]  # fmt: skip
        assert all(piece["state"] == "started" for piece in up["pieces"]), up
        api_url, postgres_port = up["api_url"], base + 4
        assert api_url == f"http://127.0.0.1:{base}/api"

        train = run_through_a_kill(api_url, "train/train", {"data": str(images), **TRAIN_PARAMETERS_BASE}, state,
                                   "api-1")  # fmt: skip
        assert (home / "models" / "champion.json").exists(), "the worker's runs write to the team's home"

        # `up` again brings back what was lost, and only that.
        result, again = run_stack("up", *location)
        assert result.returncode == 0, f"{result.stderr[-3000:]}\n{stack_logs(state)}"
        states = {piece["name"]: piece["state"] for piece in again["pieces"]}
        assert states.pop("api-1") == "started" and set(states.values()) == {"running"}, again

        # The watcher waits 300 quiet seconds for a drop without _READY: this one is the explicit run's alone.
        inbox = home / "drops" / "inbox"
        put_drop(inbox, "drop-a", images=6, ready_file=False, seed=100)
        scoring = run_through_a_kill(api_url, "score-drops/score-drops", {"inbox": {"settle_seconds": 0}}, state,
                                     "api-2")  # fmt: skip
        assert (home / "drops" / "done" / "drop-a").is_dir() and not (inbox / "drop-a").exists()

        # `status` tells the operator which piece is lost, and only that one.
        result, status = run_stack("status", *location)
        health = {piece["name"]: piece["healthy"] for piece in status["pieces"]}
        assert result.returncode == 1 and not status["ok"] and health.pop("api-2") is False, status
        assert all(health.values()), status

        # With api-2 dead, a ready drop still reaches the services' trigger through api-1 and Redis.
        dropped_at = time.monotonic()
        put_drop(inbox, "drop-b", images=4, ready_file=True, seed=200)
        deadline = time.monotonic() + RUN_SECONDS
        while not (home / "drops" / "done" / "drop-b").is_dir() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (home / "drops" / "done" / "drop-b").is_dir(), stack_logs(state)
        print(f"inbox trigger: drop-b scored {time.monotonic() - dropped_at:.1f} s after it was put in the inbox")
        assert list((home / "predictions" / "drop-b" / "predictions").glob("*.parquet"))

        triggered = query_prefect_database(postgres_port, """
            SELECT flow_run.id::text FROM flow_run JOIN deployment ON deployment.id = flow_run.deployment_id
            WHERE deployment.name = 'score-drops' AND flow_run.created_by->>'type' = 'AUTOMATION'
        """)  # fmt: skip
        assert triggered, "the score-drops run for drop-b was started by the inbox trigger"
        for (flow_run_id,) in triggered:
            wait_for_run(api_url, flow_run_id, final, RUN_SECONDS, state)

        # PostgreSQL holds the whole story: every deployment on the pool, every run completed.
        deployments = query_prefect_database(postgres_port, """
            SELECT deployment.name, work_pool.name FROM deployment
            JOIN work_queue ON work_queue.id = deployment.work_queue_id
            JOIN work_pool ON work_pool.id = work_queue.work_pool_id
        """)  # fmt: skip
        assert sorted(deployments) == sorted((name, "visionflow") for name in DEPLOYMENT_NAMES)
        runs = query_prefect_database(postgres_port, """
            SELECT flow_run.id::text, flow.name, flow_run.state_type::text, deployment.name
            FROM flow_run JOIN flow ON flow.id = flow_run.flow_id
            LEFT JOIN deployment ON deployment.id = flow_run.deployment_id
        """)  # fmt: skip
        by_id = {row[0]: row[1:] for row in runs}
        assert by_id[train["id"]] == ("train", "COMPLETED", "train")
        assert by_id[scoring["id"]] == ("score-drops", "COMPLETED", "score-drops")
        assert all(state_type == "COMPLETED" for _flow, state_type, _deployment in by_id.values()), by_id
        # Task run states reach PostgreSQL through events and the services' task run recorder, a few seconds late.
        deadline = time.monotonic() + 60
        while (
            unfinished := query_prefect_database(postgres_port, UNFINISHED_TASK_RUNS)
        ) and time.monotonic() < deadline:
            time.sleep(1)
        assert not unfinished, f"task runs left unfinished by the kills: {unfinished}"
        events = query_prefect_database(postgres_port, """
            SELECT count(*) FROM events WHERE event = 'visionflow.inbox.ready'
        """)  # fmt: skip
        assert events[0][0] >= 1, "the services persisted the inbox's event from Redis"
        # Both drops' files are in the shared scoring ledger on the same PostgreSQL, not in a SQLite file.
        ledger = query_prefect_database(
            postgres_port, "SELECT drop_name, count(*) FROM drop_files GROUP BY 1", "ledger"
        )
        assert sorted(ledger) == [("drop-a", 6), ("drop-b", 4)]
        assert not (home / "ledger").exists()
        assert read_run(api_url, train["id"]).state.is_completed(), "the API still answers through the balancer"
    finally:
        result, down, recorded = take_down(location, state)
        print(f"test: {time.monotonic() - started:.1f} s in all; down: {down.get('seconds')} s")
        shutil.rmtree(root, ignore_errors=True)

    assert_nothing_left(result, down, recorded, base)
    states = {piece["name"]: piece["state"] for piece in down["pieces"]}
    assert states.pop("api-2") == "not running" and set(states.values()) <= {"stopped", "killed"}, down

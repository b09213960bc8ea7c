"""Helpers of the high-availability test: the stack's command, flow runs through its balancer, and its database."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visionflow.deployments.team_stack_config import PREFECT_DATABASE, SUPERUSER, missing_tools
from visionflow.deployments.team_stack_processes import StackState, port_in_use

from tests.conftest import write_image

STACK = [sys.executable, "-m", "visionflow.deployments.team_stack"]
STACK_COMMAND_SECONDS = 420  # `up` on two busy cores: PostgreSQL, migrations, two servers, deploy, worker.


def require_stack_tools() -> None:
    """Skip where the stack cannot run here (CI installs what it needs and sets VISIONFLOW_REQUIRE_TEAM_HA=1)."""
    if missing := missing_tools():
        message = f"the team stack needs {', '.join(missing)}"
        if os.environ.get("VISIONFLOW_REQUIRE_TEAM_HA") == "1":
            pytest.fail(f"{message}, and VISIONFLOW_REQUIRE_TEAM_HA=1 asks for it")
        pytest.skip(message)


def free_base_port() -> int:
    """A base port whose next four ports are free too (the stack takes five)."""
    for _ in range(100):
        base = random.randrange(20000, 32000, 10)  # Below Linux's ephemeral ports (32768 and up).
        if not any(port_in_use(port) for port in range(base, base + 5)):
            return base
    raise AssertionError("no five free ports in a row found on 127.0.0.1")


def stack_environment() -> dict[str, str]:
    """The shell of the stack's user: no scheduler (scheduled runs would compete with the test's on
    the worker), and a worker that asks for runs every second."""
    return {**os.environ, "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}


def run_stack(*arguments: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the stack's command with --json; return it and its JSON summary (the last line of stdout)."""
    result = subprocess.run([*STACK, *arguments, "--json"], capture_output=True, text=True,
                            env=stack_environment(), timeout=STACK_COMMAND_SECONDS, check=False)  # fmt: skip
    lines = result.stdout.strip().splitlines()
    return result, json.loads(lines[-1]) if lines else {}


def stack_logs(state: Path, characters: int = 1500) -> str:
    """The end of every log of the stack, for a failure's message."""
    tails = []
    for log in sorted((state / "logs").glob("*.log")):
        tails.append(f"--- {log.name}\n{log.read_text(errors='replace')[-characters:]}")
    return "\n".join(tails)


def kill_piece(state: Path, name: str) -> int:
    """SIGKILL a piece's whole process group, as if its machine were lost; return its pid."""
    record = StackState.load(state / "processes.json").processes[name]
    os.killpg(record.pid, signal.SIGKILL)
    return record.pid


def start_run(api_url: str, name: str, parameters: dict):
    """Create a flow run of the deployment name through the balancer, as the UI does; do not wait."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return run_deployment(name, parameters=parameters, timeout=0)


def read_run(api_url: str, flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def wait_for_run(api_url: str, flow_run_id, until, timeout: float, state: Path):
    """Poll the flow run through the balancer every half second until until(run) holds; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = read_run(api_url, flow_run_id)
        if until(run):
            return run
        if run.state and run.state.is_final():
            break
        time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} is {run.state!r}\n{stack_logs(state)}")


def query_prefect_database(postgres_port: int, query: str, database: str = PREFECT_DATABASE) -> list[tuple]:
    """Rows of a query on Prefect's own database (or another) in the stack's PostgreSQL."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=postgres_port, user=SUPERUSER, dbname=database) as db:
        return db.execute(query).fetchall()


def write_training_images(root: Path) -> Path:
    """Two plainly different classes, enough of each for every split's contract minimum."""
    for index in range(60):
        write_image(root / "red" / f"{index}.png", (220, 30, 30), seed=index)
        write_image(root / "blue" / f"{index}.png", (30, 30, 220), seed=1000 + index)
    return root


def put_drop(inbox: Path, name: str, images: int, ready_file: bool, seed: int) -> Path:
    """Write a drop elsewhere and move it into the inbox in one rename, as a careful uploader does."""
    staging = inbox.parent / "staging" / name
    for index in range(images):
        write_image(staging / f"{index}.png", (220, 30, 30) if index % 2 else (30, 30, 220), seed=seed + index)
    if ready_file:
        (staging / "_READY").touch()
    inbox.mkdir(parents=True, exist_ok=True)
    return staging.rename(inbox / name)


def alive(pid: int, start_ticks: str) -> bool:
    """True while the process that had pid and start time runs (not a zombie, not a later process)."""
    from visionflow.processes.reaper import process_start

    return process_start(pid)[0] == start_ticks


def take_down(location: list[str], state: Path) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """Run `team_stack down`; (its result, its report, the processes the stack had recorded before)."""
    saved = state / "processes.json"
    recorded = StackState.model_validate_json(saved.read_text() if saved.exists() else "{}").processes
    result, down = run_stack("down", *location)
    return result, down, recorded


def assert_nothing_left(result: subprocess.CompletedProcess, down: dict, recorded: dict, base: int) -> None:
    """`down` succeeded, no recorded process runs any more and every port of the stack is free."""
    assert result.returncode == 0 and down["ok"], f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
    for record in recorded.values():
        assert not alive(record.pid, record.start_ticks), f"{record.name} (pid {record.pid}) still runs"
    assert not [port for port in range(base, base + 5) if port_in_use(port)], "every port of the stack is free"

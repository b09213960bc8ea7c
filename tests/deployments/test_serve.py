"""`visionflow serve` against a real Prefect server: deployments, a UI-style triggered run, the inbox.

One long test (about two minutes): a server on a free port, `visionflow serve` pointed at it, the
`train` deployment run with parameters through run_deployment as the UI does, then a burst of drops
written into the inbox and scored by one run with no further call, then a clean shutdown on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from visionflow.deployments.serve import start_server, stop_server
from visionflow.home import HomeLayout

from tests.conftest import VISIONFLOW, write_image

READY_TIMEOUT_SECONDS = 180  # serve imports TensorFlow and registers eight deployments.
DROP_TIMEOUT_SECONDS = 120  # A ready drop must be scored well within this.
BURST_DROPS = 5  # Drops that arrive in the inbox at once.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A real Prefect server with its own database, on a free port."""
    layout = HomeLayout(tmp_path / "server-home")
    layout.prefect.mkdir(parents=True)
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(layout.prefect)
    try:
        process, api_url = start_server(layout, free_port())
    finally:
        os.environ["PREFECT_HOME"] = previous or ""
    yield api_url
    stop_server(process)


def wait_for_json_line(process: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip().startswith("{"):
            return json.loads(line)
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.stderr.read()[-3000:]}")
    raise AssertionError("serve did not report ready in time")


async def deployments_and_runs(api_url: str) -> tuple[dict, list]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        deployments = {deployment.name: deployment for deployment in await client.read_deployments()}
        runs = await client.read_flow_runs()
    return deployments, runs


def test_serve_runs_deployments_and_scores_an_inbox_drop_by_itself(server, tmp_path, home):
    environment = {**os.environ, "PREFECT_API_URL": server, "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_HOME", None)
    command = [*VISIONFLOW, "serve", "--settle-seconds", "2", "--score-every", "3600", "--json",
               "--allow-root", str(tmp_path / "images")]  # fmt: skip
    serve = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_for_json_line(serve, READY_TIMEOUT_SECONDS)
        assert ready["api_url"] == server
        deployments, _ = asyncio.run(deployments_and_runs(server))
        assert {"train", "score-drops", "score", "ingest"} <= set(deployments)
        assert deployments["train"].schedules[0].schedule.cron == "0 3 * * 1"
        assert deployments["score-drops"].schedules[0].schedule.interval.total_seconds() == 3600

        images = tmp_path / "images"
        for index in range(60):
            for class_name, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
                write_image(
                    images / class_name / f"{index}.png", color, seed=index + (1000 if class_name == "red" else 0)
                )
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        parameters = {"data": str(images), "preset": "tiny", "ingest": {"decode": {"image_size": 12}}}
        with temporary_settings(updates={PREFECT_API_URL: server}):
            run = run_deployment("train/train", parameters=parameters, timeout=300)
        assert run.state.is_completed(), run.state
        assert (home / "models" / "champion.json").is_file()

        # A run from a deployment reads only under the allowed roots and uses only the serving home.
        with temporary_settings(updates={PREFECT_API_URL: server}):
            outside = run_deployment("score/score", parameters={"drop": "/etc"}, timeout=120)
            elsewhere = run_deployment("score-drops/score-drops", parameters={"home": str(tmp_path)}, timeout=120)
        assert outside.state.is_failed() and "/etc is outside the folders this service may read" in str(
            outside.state.message
        )
        assert elsewhere.state.is_failed() and "is not this service's VISIONFLOW_HOME" in str(elsewhere.state.message)
        assert not (home / "predictions" / "etc").exists()

        # A burst: five drops arrive at once. One run scores them all, each file once.
        staging, inbox = tmp_path / "staging", home / "drops" / "inbox"
        for number in range(BURST_DROPS):
            for index in range(3):
                write_image(staging / f"arrivals-{number}" / "batch" / f"{index}.jpg", (200, 40, 40),
                            seed=5000 + 10 * number + index)  # fmt: skip
            (staging / f"arrivals-{number}" / "_READY").write_text("")
        burst_started = datetime.now(UTC)
        for number in range(BURST_DROPS):
            (staging / f"arrivals-{number}").rename(inbox / f"arrivals-{number}")
        done = home / "drops" / "done"
        deadline = time.monotonic() + DROP_TIMEOUT_SECONDS
        while len(list(done.glob("arrivals-*"))) < BURST_DROPS and time.monotonic() < deadline:
            time.sleep(1)
        assert len(list(done.glob("arrivals-*"))) == BURST_DROPS, f"drops not all scored in {DROP_TIMEOUT_SECONDS} s"
        for number in range(BURST_DROPS):
            parts = list((home / "predictions" / f"arrivals-{number}" / "predictions").glob("*.parquet"))
            paths = pq.ParquetDataset(parts).read(columns=["path"])["path"].to_pylist()
            assert sorted(paths) == [f"batch/{index}.jpg" for index in range(3)]
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            return_code = serve.wait(timeout=60)
        finally:
            serve.kill()
    assert return_code == 0
    _, runs = asyncio.run(deployments_and_runs(server))
    names = {run.name for run in runs}
    assert "score-drops" in names and "train-tiny-" + str(images) in names
    burst_runs = [run for run in runs if run.name == "score-drops" and run.expected_start_time >= burst_started]
    assert 1 <= len(burst_runs) <= 2, "a burst of ready drops starts one run (two if it straddles a look), not one each"
    assert not [run.name for run in runs if run.state_type.value in ("RUNNING", "PENDING")]


def test_a_missing_train_data_folder_is_refused_before_anything_starts(tmp_path):
    command = [*VISIONFLOW, "serve", "--home", str(tmp_path / "home"), "--train-data", str(tmp_path / "nowhere")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1].endswith("nowhere: no such folder here, and not 'cifar10' or 'demo'")
    assert not (tmp_path / "home").exists(), "refused before the home and the server were set up"


def test_a_port_in_use_is_refused_naming_it(tmp_path):
    from visionflow.errors import VisionflowError

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(VisionflowError, match=f"port {port} is already in use"):
            start_server(HomeLayout(tmp_path), port)


def test_the_served_api_answers_only_its_own_origin_and_wants_a_csrf_token(server):
    import urllib.error
    import urllib.request

    origin = server.removesuffix("/api")

    def preflight(from_origin: str) -> str | None:
        request = urllib.request.Request(
            f"{server}/flow_runs/", method="OPTIONS",
            headers={"Origin": from_origin, "Access-Control-Request-Method": "POST"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.headers.get("access-control-allow-origin")
        except urllib.error.HTTPError as error:
            return error.headers.get("access-control-allow-origin")

    assert preflight("http://evil.example") is None, "another web page may not call the API"
    assert preflight(origin) == origin, "the server's own UI may"
    request = urllib.request.Request(
        f"{server}/flow_runs/filter", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code in (403, 422) and "csrf" in refused.value.read().decode().lower()

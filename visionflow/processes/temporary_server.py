"""The temporary Prefect server of a command, started first so it boots while the command imports.

Without PREFECT_API_URL, Prefect starts a temporary server itself, but only when the flow is
about to run, after every import: the command then waits for it (about 4 s on two cores). A
command starts the same server (Prefect's own ephemeral app under uvicorn, UI off, on a free
loopback port) before importing Prefect, TensorFlow or Great Expectations, points
PREFECT_API_URL at it, and waits for it only just before its flow runs. It is stopped when the
command ends; the reaper (visionflow/processes/reaper.py) stops it after a kill.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from visionflow.errors import VisionflowError

STARTUP_TIMEOUT_SECONDS = 120  # A first start creates the database; slow on two busy cores.


def answers_health_check(api_url: str) -> bool:
    """True when the Prefect API at api_url answers its health check within 2 s."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class TemporaryServer:
    """A Prefect API server process for this command alone."""

    def __init__(self, process: subprocess.Popen, api_url: str) -> None:
        self.process, self.api_url = process, api_url

    def wait_until_healthy(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Block until the server answers its health check; VisionflowError if it cannot start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VisionflowError(
                    f"the temporary Prefect server exited with code {self.process.returncode} before answering; "
                    "set PREFECT_API_URL to a running server, or run the command again"
                )
            if answers_health_check(self.api_url):
                return
            time.sleep(0.1)
        raise VisionflowError(f"the temporary Prefect server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server and wait briefly for it to finish writing its database."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_temporary_server() -> TemporaryServer | None:
    """Start a server and point PREFECT_API_URL at it; None when PREFECT_API_URL already names one.

    Call before Prefect is imported: Prefect reads PREFECT_API_URL when it loads its settings.
    """
    if os.environ.get("PREFECT_API_URL"):
        return None
    port = _free_port()
    environment = {**os.environ, "PREFECT_UI_ENABLED": "0",
                   # Prefect's own markers of its temporary server: its background services stay off.
                   "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(_prefect_parent()), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "error", "--lifespan", "on"]  # fmt: skip
    process = subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL)
    server = TemporaryServer(process, f"http://127.0.0.1:{port}/api")
    os.environ["PREFECT_API_URL"] = server.api_url
    atexit.register(server.stop)
    return server


def _prefect_parent() -> Path:
    """The folder holding the prefect package, found without importing it."""
    spec = importlib.util.find_spec("prefect")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

"""The temporary Prefect server of a command, started first so it boots while the command imports.

Without PREFECT_API_URL, Prefect starts a temporary server itself, but only when the flow is
about to run, after every import: the command then waits for it (about 4 s on two cores). A
command starts the same server before importing Prefect, TensorFlow or Great Expectations,
points PREFECT_API_URL at it, and waits for it only just before its flow runs. The server is
uvicorn serving the app of prefect_server_app below, on a free loopback port: Prefect's public
create_app, asked for its ephemeral form (no UI, only the services that record runs and events),
as Prefect's own temporary server is. It is stopped when the command ends; the reaper
(visionflow/processes/reaper.py) stops it after a kill.
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
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(_installed_packages()), "--factory",
               f"{__name__}:prefect_server_app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "error", "--lifespan", "on"]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    server = TemporaryServer(process, f"http://127.0.0.1:{port}/api")
    os.environ["PREFECT_API_URL"] = server.api_url
    atexit.register(server.stop)
    return server


def prefect_server_app():
    """Prefect's API app as its temporary server runs it; uvicorn calls this in the server's process.

    ephemeral: no UI, and of Prefect's background services only those that record task runs and
    events (a command's flows run in the command itself, so schedulers have nothing to do);
    final: the only app that process builds, so Prefect may free what building it took.
    """
    from prefect.server.api.server import create_app  # Only the server's process imports Prefect's server.

    return create_app(ephemeral=True, final=True)


def _installed_packages() -> Path:
    """The folder of the installed packages (Prefect's), found without importing Prefect.

    uvicorn puts its --app-dir first on the server's import path; the working folder, its default,
    could hold a module named like one of Prefect's. visionflow is found as it was installed.
    """
    spec = importlib.util.find_spec("prefect")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

"""`visionflow serve`: one process that makes visionflow a running service on this machine.

It starts a Prefect server (SQLite under VISIONFLOW_HOME/prefect, bound to 127.0.0.1, UI
included) unless PREFECT_API_URL already names one, starts the inbox watcher, and serves the
deployments of deployments/definitions.py until SIGINT or SIGTERM. On shutdown Prefect's runner
cancels runs still in flight (they show as Cancelled, never as Running) and pauses the schedules
until the next start; then the watcher and the server stop.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from visionflow.access import ALLOWED_ROOTS_VARIABLE
from visionflow.deployments.settings import ServeConfig
from visionflow.errors import VisionflowError
from visionflow.home import BUILT_IN_SOURCES, HomeLayout
from visionflow.ledger.inbox import InboxConfig
from visionflow.processes.temporary_server import answers_health_check

logger = logging.getLogger(__name__)

SERVER_START_TIMEOUT_SECONDS = 180  # A first start builds the database; slow on two busy cores.


def start_server(layout: HomeLayout, port: int) -> tuple[subprocess.Popen, str]:
    """Start `prefect server start` on 127.0.0.1:port; return the process and its API URL once healthy."""
    url = f"http://127.0.0.1:{port}/api"
    log_path = layout.prefect / "server.log"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # The UI, served by the same process, must call this server's API, not the default port's.
    environment = {**lockdown_settings(port), **os.environ, "PREFECT_UI_API_URL": url,
                   "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}  # fmt: skip
    if answers_health_check(url) or port_in_use(port):
        raise VisionflowError(f"port {port} is already in use on 127.0.0.1: choose another with --port")
    with open(log_path, "ab") as log_file:
        # Its own session: Ctrl-C reaches serve, which stops the runs first and the server last.
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VisionflowError(
                f"the Prefect server did not start on port {port} (is the port in use? try --port); log: {log_path}"
            )
        if answers_health_check(url):
            return process, url
        time.sleep(0.5)
    process.terminate()
    raise VisionflowError(f"the Prefect server did not answer within {SERVER_START_TIMEOUT_SECONDS} s; log: {log_path}")


def lockdown_settings(port: int) -> dict[str, str]:
    """Prefect server settings that keep other web pages out of the API; the environment may override them.

    Without them any page open in the user's browser could call the API (Prefect answers every
    origin by default) and start runs: only the server's own UI origin may make cross-origin
    calls, and every state-changing request must carry a CSRF token, which Prefect's clients
    and UI fetch on their own.
    """
    return {
        "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": f"http://127.0.0.1:{port},http://localhost:{port}",
        "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
    }


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server process, waiting for it to finish writing."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def serve_deployments(layout: HomeLayout, config: ServeConfig, on_ready=None) -> None:
    """Serve the deployments with the inbox watcher beside them, until SIGINT or SIGTERM.

    The deployments are registered first, so on_ready() runs when they are visible in the UI.
    """
    from prefect import serve

    from visionflow.deployments.definitions import all_deployments
    from visionflow.deployments.inbox_watcher import InboxWatcher
    from visionflow.ledger.inbox import DropFolders

    os.environ[ALLOWED_ROOTS_VARIABLE] = os.pathsep.join(str(root) for root in served_roots(layout, config))
    deployments = all_deployments(config)
    for deployment in deployments:
        deployment.apply()
    if on_ready:
        on_ready()
    inbox = InboxConfig(settle_seconds=config.settle_seconds)
    watcher = InboxWatcher(DropFolders(layout.drops), inbox, config.poll_seconds)
    watcher.start()
    try:
        serve(*deployments, print_starting_message=False)
    finally:
        watcher.stop()


def served_roots(layout: HomeLayout, config: ServeConfig) -> list[Path]:
    """The folders runs from the served deployments may read: the drop folders, the scheduled
    training data when it is a folder, each allowed root, and any already in the environment."""
    roots = [layout.drops, *(Path(root) for root in config.allowed_roots)]
    if config.train_data not in BUILT_IN_SOURCES:
        roots.append(Path(config.train_data))
    inherited = os.environ.get(ALLOWED_ROOTS_VARIABLE, "")
    roots += [Path(root) for root in inherited.split(os.pathsep) if root]
    return list(dict.fromkeys(root.expanduser().resolve() for root in roots))


def run_service(layout: HomeLayout, config: ServeConfig, on_started=None, on_ready=None) -> None:
    """Start (or reuse) the server, then serve until stopped.

    on_started(api_url) runs once the server answers (Prefect may be imported from then on),
    on_ready(api_url) once the deployments are registered.

    PREFECT_API_URL must be set before Prefect is imported, so this starts the server first.
    """
    server = None
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        server, api_url = start_server(layout, config.port)
        os.environ["PREFECT_API_URL"] = api_url
    elif not answers_health_check(api_url):
        raise VisionflowError(f"PREFECT_API_URL={api_url} does not answer; start that server or unset the variable")
    try:
        if on_started:
            on_started(api_url)
        serve_deployments(layout, config, on_ready=(lambda: on_ready(api_url)) if on_ready else None)
    finally:
        if server is not None:
            stop_server(server)

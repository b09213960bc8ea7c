"""How each piece of the team stack starts, and how the stack tells that it is ready.

Every start returns the piece's record once it answers: PostgreSQL accepts connections, Redis
answers PING, an API server and the load balancer answer /api/health, the services have joined
the event stream's consumer groups on Redis, each worker is online in its pool, and the inbox
watcher has reached the API. Each wait is bounded and fails with one line naming the piece's log.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from visionflow.deployments.team_stack_config import (
    LEDGER_DATABASE,
    PREFECT_DATABASE,
    SUPERUSER,
    TeamStackConfig,
    client_environment,
    haproxy_config,
    postgres_bin_dir,
    server_environment,
)
from visionflow.deployments.team_stack_processes import (
    ProcessRecord,
    is_running,
    port_in_use,
    record_of,
    redis_answers,
    run_step,
    signal_group,
    spawn,
    wait_until,
)
from visionflow.errors import VisionflowError
from visionflow.processes.temporary_server import answers_health_check

START_SECONDS = 180.0  # The longest any piece may take to become ready; two busy cores are slow.
# How long `status` waits for an event to come back through the services; the persister writes
# its batch every 5 s (Prefect's default flush interval).
EVENT_SECONDS = 15.0


def spawn_ready(name: str, command: list[str], environment: dict[str, str], log: Path, ready, port=None):
    """Start a piece and wait until ready(its record) holds; one that never gets ready is killed, not left behind."""
    process, record = spawn(name, command, environment, log, port)
    try:
        wait_until(name, lambda: ready(record), START_SECONDS, process, log)
    except VisionflowError:
        signal_group(record, signal.SIGKILL)
        raise
    return record


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its server tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def postgres_data(config: TeamStackConfig) -> Path:
    return config.state / "postgres" / "data"


def start_postgres(config: TeamStackConfig) -> ProcessRecord:
    """initdb on first use, start the server on 127.0.0.1, and create Prefect's and the ledger's databases."""
    bin_dir, data, log = postgres_bin_dir(), postgres_data(config), config.logs / "postgres.log"
    data.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    if os.geteuid() == 0:  # The server runs as user postgres: its folders and its log are that user's.
        postgres = pwd.getpwnam("postgres")
        for path in (data.parent, data, log):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    if not (data / "PG_VERSION").exists():
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
        reachable = subprocess.run(_as_postgres_user(["test", "-w", str(data)]), capture_output=True, check=False)
        if reachable.returncode != 0:
            raise VisionflowError(
                f"user postgres cannot write {data}: as root, give --state a folder every user can enter"
            )
        run_step("initdb", _as_postgres_user(initdb), dict(os.environ), config.logs / "postgres-init.log", 120)
    # TCP on loopback only, no Unix socket (a deep state folder would pass the socket path's 107-byte limit).
    options = f"-p {config.postgres_port} -k '' -c listen_addresses=127.0.0.1 -c max_connections=200"
    start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "120", "start"]
    run_step("PostgreSQL", _as_postgres_user(start), dict(os.environ), config.logs / "postgres-start.log", 150)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    record = record_of("postgres", pid, log, config.postgres_port)
    existing = _psql(config, "SELECT datname FROM pg_database").split()
    for database in (PREFECT_DATABASE, LEDGER_DATABASE):
        if database not in existing:
            _psql(config, f'CREATE DATABASE "{database}"')
    return record


def _psql(config: TeamStackConfig, statement: str) -> str:
    psql = [str(postgres_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(config.postgres_port), "-U", SUPERUSER,
            "-d", "postgres", "-tAc", statement]  # fmt: skip
    result = subprocess.run(psql, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise VisionflowError(f"PostgreSQL refused {statement!r}: {result.stderr.strip()}")
    return result.stdout


def stop_postgres(config: TeamStackConfig, record: ProcessRecord) -> tuple[list[int], list[int]]:
    """Stop PostgreSQL with pg_ctl (fast: open sessions are ended); kill it if that fails.

    Returns the pids killed and those still alive, as stop_process does."""
    stop = [str(postgres_bin_dir() / "pg_ctl"), "-D", str(postgres_data(config)), "-m", "fast", "-w", "-t", "60",
            "stop"]  # fmt: skip
    subprocess.run(_as_postgres_user(stop), capture_output=True, timeout=90, check=False)
    if not is_running(record):
        return [], []
    os.kill(record.pid, signal.SIGKILL)
    time.sleep(1)
    return [record.pid], [record.pid] if is_running(record) else []


def postgres_ready(config: TeamStackConfig) -> bool:
    return port_in_use(config.postgres_port)


def start_redis(config: TeamStackConfig) -> ProcessRecord:
    """Redis on 127.0.0.1, its append-only file in the state folder (events survive a restart)."""
    folder = config.state / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(config.redis_port), "--dir", str(folder),
               "--appendonly", "yes", "--save", "", "--protected-mode", "yes", "--daemonize", "no"]  # fmt: skip
    log = config.logs / "redis.log"
    return spawn_ready("redis", command, dict(os.environ), log, lambda _: redis_answers(config.redis_port),
                       config.redis_port)  # fmt: skip


def migrate_prefect_database(config: TeamStackConfig) -> None:
    """Bring Prefect's tables up to date once, before any server starts (they do not migrate themselves)."""
    environment = server_environment(config, config.state / "prefect" / "migrate")
    command = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
    run_step("the Prefect database migration", command, environment, config.logs / "migrate.log", START_SECONDS)


def start_api_server(config: TeamStackConfig, index: int) -> ProcessRecord:
    """Start API server number index (1-based) without services; return it once it answers /api/health.

    The stack starts them one at a time: each registers Prefect's block types as it starts, and two
    doing so at once on a fresh database collide on the same rows (one exits with a unique violation).
    """
    port = config.api_ports[index - 1]
    environment = {**server_environment(config, config.state / "prefect" / f"api-{index}"),
                   "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}  # fmt: skip
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--no-services"]  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    return spawn_ready(f"api-{index}", command, environment, config.logs / f"api-{index}.log",
                       lambda _: answers_health_check(url), port)  # fmt: skip


def start_services(config: TeamStackConfig) -> ProcessRecord:
    """Prefect's background services (scheduler, triggers, event persister, ...) in one process."""
    environment = server_environment(config, config.state / "prefect" / "services")
    command = [sys.executable, "-m", "prefect", "server", "services", "start"]
    log = config.logs / "services.log"
    direct = f"http://127.0.0.1:{config.api_ports[0]}/api"  # The balancer may not run yet.
    return spawn_ready("services", command, environment, log, EventRoundTrip(direct))


class EventRoundTrip:
    """Readiness of the services: an event sent to an API server comes back from PostgreSQL.

    The first call publishes a probe event (the API server puts it on the Redis stream); each call
    then asks whether the event persister, one of the services, has stored it. That is the path every
    event takes (the inbox's, the runs'), so it proves the services consume the stream, which the
    consumer groups on Redis cannot: they outlive a killed services process.
    """

    def __init__(self, api_url: str) -> None:
        self.api_url, self.event_id = api_url, None

    def __call__(self, _record=None) -> bool:
        from prefect.client.orchestration import get_client
        from prefect.events import Event
        from prefect.events.filters import EventFilter, EventIDFilter
        from prefect.settings import PREFECT_API_URL, temporary_settings

        try:
            with temporary_settings(updates={PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
                if self.event_id is None:
                    probe = Event(
                        event="visionflow.team-stack.probe", resource={"prefect.resource.id": "visionflow.team"}
                    )
                    client.request("POST", "/events", json=[probe.model_dump(mode="json")]).raise_for_status()
                    self.event_id = probe.id
                page = client.read_events(EventFilter(id=EventIDFilter(id=[self.event_id])), limit=1)
        except Exception:  # The API or the stream is not there yet.
            return False
        return bool(page.events)


def start_balancer(config: TeamStackConfig) -> ProcessRecord:
    """HAProxy in front of the API servers, on the stack's own port."""
    config_path = config.state / "haproxy.cfg"
    config_path.write_text(haproxy_config(config))
    log = config.logs / "balancer.log"
    command = [shutil.which("haproxy") or "haproxy", "-f", str(config_path), "-db"]
    return spawn_ready("balancer", command, dict(os.environ), log, lambda _: answers_health_check(config.api_url),
                       config.balancer_port)  # fmt: skip


def start_inbox_watcher(config: TeamStackConfig) -> ProcessRecord:
    """The inbox watcher of `visionflow serve`, alone: it announces ready drops to the API through the
    balancer, and the score-drops trigger (in the services, through Redis) starts a run on the worker."""
    ready_file = config.state / "inbox-watcher.ready"
    ready_file.unlink(missing_ok=True)
    environment = client_environment(config, config.state / "prefect" / "inbox-watcher")
    command = [sys.executable, "-m", "visionflow.deployments.team_stack", "inbox-watcher", "--home", str(config.home),
               "--settle-seconds", str(config.settle_seconds), "--poll-seconds", str(config.poll_seconds),
               "--ready-file", str(ready_file)]  # fmt: skip
    log = config.logs / "inbox-watcher.log"
    return spawn_ready("inbox-watcher", command, environment, log, lambda _: ready_file.exists())


def healthy(config: TeamStackConfig, record: ProcessRecord) -> bool:
    """Whether a running piece answers as it should; pieces without a port count when they run."""
    if not is_running(record):
        return False
    if record.name == "postgres":
        return postgres_ready(config)
    if record.name == "redis":
        return redis_answers(config.redis_port)
    if record.name.startswith("api-") or record.name == "balancer":
        return answers_health_check(f"http://127.0.0.1:{record.port}/api")
    if record.name == "services":
        probe, deadline = EventRoundTrip(config.api_url), time.monotonic() + EVENT_SECONDS
        while not probe() and time.monotonic() < deadline:
            time.sleep(0.5)
        return probe()
    return True

"""Where the high-availability team stack lives and how its pieces are set up, importable without Prefect.

The stack (deployments/team_stack.py) runs on one machine, bound to 127.0.0.1: PostgreSQL, Redis,
two Prefect API servers without services behind an HAProxy load balancer, Prefect's background
services in a process of their own, process workers and the inbox watcher. Every port derives
from one base port, and every file the stack keeps (databases, logs, process ids) lives in one
state folder, VISIONFLOW_HOME/team unless given.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from visionflow.access import ALLOWED_ROOTS_VARIABLE
from visionflow.deployments.serve import lockdown_settings
from visionflow.errors import VisionflowError
from visionflow.home import LEDGER_URL_VARIABLE, OFFLINE_DEFAULTS, HomeLayout
from visionflow.ledger.inbox import InboxConfig

SUPERUSER = "visionflow"  # The PostgreSQL role initdb creates; trust authentication, loopback only.
PREFECT_DATABASE = "prefect"  # Prefect's own database: flow runs, deployments, events.
LEDGER_DATABASE = "ledger"  # The scoring ledger every run of the stack's workers shares.
API_SERVER_COUNT = 2
# The stack sets these Prefect settings itself; values inherited from the shell would point the
# pieces at another server, database or home.
OWN_PREFECT_SETTINGS = (
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "PREFECT_PROFILES_PATH",
    "PREFECT_API_DATABASE_CONNECTION_URL",
)


class TeamStackConfig(BaseModel):
    """What `team_stack up` brings up, and where."""

    home: Path  # The team's VISIONFLOW_HOME: the registry, the drop inbox, the predictions.
    state: Path  # Databases, logs and process ids of the stack.
    # The load balancer listens here; the two API servers, Redis and PostgreSQL on the next four ports.
    base_port: int = Field(default=4200, ge=1024, le=65530)
    pool: str = "visionflow"  # The process work pool `visionflow deploy` creates and the workers serve.
    # Process workers on the pool, each a `prefect worker start` of its own; as many score-drops runs may go at once.
    workers: int = Field(default=1, ge=1, le=8)
    # Quiet seconds before the inbox watcher counts a drop without _READY as ready.
    settle_seconds: float = Field(default=InboxConfig.model_fields["settle_seconds"].default, ge=0)
    poll_seconds: float = Field(default=2.0, gt=0)  # How often the inbox watcher looks, in seconds.
    allowed_roots: list[Path] = Field(default_factory=list)  # Folders runs may read besides the drop folders.
    deploy_options: list[str] = Field(default_factory=list)  # Passed on to `visionflow deploy` (--score-every ...).

    @property
    def balancer_port(self) -> int:
        return self.base_port

    @property
    def api_ports(self) -> list[int]:
        return [self.base_port + 1 + index for index in range(API_SERVER_COUNT)]

    @property
    def redis_port(self) -> int:
        return self.base_port + 1 + API_SERVER_COUNT

    @property
    def postgres_port(self) -> int:
        return self.base_port + 2 + API_SERVER_COUNT

    @property
    def api_url(self) -> str:
        """The API as every client sees it: through the load balancer."""
        return f"http://127.0.0.1:{self.balancer_port}/api"

    @property
    def layout(self) -> HomeLayout:
        return HomeLayout(self.home)

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def state_file(self) -> Path:
        """The process records of the running pieces (deployments/team_stack_processes.py)."""
        return self.state / "processes.json"

    @property
    def worker_pieces(self) -> list[str]:
        """The workers' piece names: "worker" (the name a one-worker stack has always had), "worker-2", ..."""
        return ["worker", *(f"worker-{index}" for index in range(2, self.workers + 1))]

    @property
    def pieces(self) -> list[str]:
        """Every piece, in the order `up` starts them; `down` stops them the other way round."""
        return ["postgres", "redis", "api-1", "api-2", "services", "balancer", *self.worker_pieces, "inbox-watcher"]

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by piece name."""
        apis = {f"api-{index + 1}": port for index, port in enumerate(self.api_ports)}
        return {"balancer": self.balancer_port, **apis, "redis": self.redis_port, "postgres": self.postgres_port}

    def database_url(self, database: str, driver: str) -> str:
        """A SQLAlchemy URL on the stack's PostgreSQL ("asyncpg" for Prefect, "psycopg" for the ledger)."""
        return f"postgresql+{driver}://{SUPERUSER}@127.0.0.1:{self.postgres_port}/{database}"


def base_environment(prefect_home: Path) -> dict[str, str]:
    """The environment of a piece: the shell's, offline, with a Prefect home of the piece's own."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    inherited = {key: value for key, value in os.environ.items() if key not in OWN_PREFECT_SETTINGS}
    return {**OFFLINE_DEFAULTS, **inherited, "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}  # fmt: skip


def server_environment(config: TeamStackConfig, prefect_home: Path) -> dict[str, str]:
    """The settings Prefect documents for several API servers: PostgreSQL for state, Redis for
    messaging, the events cache, causal ordering of events, concurrency leases and Docket's
    background tasks, and migrations run once by the stack rather than by each server."""
    redis = f"redis://127.0.0.1:{config.redis_port}"
    return {
        **lockdown_settings(config.balancer_port),
        **base_environment(prefect_home),
        "PREFECT_API_DATABASE_CONNECTION_URL": config.database_url(PREFECT_DATABASE, "asyncpg"),
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
        "PREFECT_REDIS_MESSAGING_PORT": str(config.redis_port),
        "PREFECT_REDIS_MESSAGING_DB": "0",
        "PREFECT_SERVER_DOCKET_URL": f"{redis}/1",  # Its own Redis database, beside messaging's 0.
        # The UI each API server serves must call the load balancer, not the server it came from.
        "PREFECT_UI_API_URL": config.api_url,
    }


def client_environment(config: TeamStackConfig, prefect_home: Path) -> dict[str, str]:
    """The environment of the deployer, the workers and the inbox watcher: the API through the
    balancer, the team's home, and its scoring ledger on the stack's PostgreSQL."""
    roots = [config.layout.drops, *config.allowed_roots]
    return {
        **base_environment(prefect_home),
        "PREFECT_API_URL": config.api_url,
        "VISIONFLOW_HOME": str(config.home),
        LEDGER_URL_VARIABLE: config.database_url(LEDGER_DATABASE, "psycopg"),
        ALLOWED_ROOTS_VARIABLE: os.pathsep.join(str(root) for root in roots),
    }


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl, the newest version first; None where PostgreSQL is absent."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_tools() -> list[str]:
    """What the stack needs and this machine lacks, each with how to install it."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("PostgreSQL (apt-get install postgresql)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (apt-get install redis-server)")
    if shutil.which("haproxy") is None:
        missing.append("haproxy (apt-get install haproxy)")
    for module, package in (("prefect_redis", "prefect-redis"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{package} (pip install -e '.[ha]')")
    return missing


def check_tools() -> None:
    """VisionflowError naming every missing tool, so one install fixes them all."""
    if missing := missing_tools():
        raise VisionflowError(f"missing {', '.join(missing)}")


def haproxy_config(config: TeamStackConfig) -> str:
    """HAProxy in front of the API servers: round robin, each checked on /api/health every second.

    A server that refuses a connection is skipped at once (retries go to the other server), and one
    that fails two checks in a row takes no new requests until it passes again. A request in flight
    when its server dies is answered 502, which Prefect's clients retry. Long timeouts keep the
    websockets of event streams and log subscriptions open. Its log (notice level) records each
    server going down and coming back, without a line per request.
    """
    servers = "\n".join(
        f"    server api-{index + 1} 127.0.0.1:{port} check" for index, port in enumerate(config.api_ports)
    )
    return f"""global
    maxconn 4096
    log stdout format raw local0 notice

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    retries 3
    option redispatch

frontend prefect
    bind 127.0.0.1:{config.balancer_port}
    default_backend prefect_api

backend prefect_api
    balance roundrobin
    option httpchk
    http-check send meth GET uri /api/health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}
"""

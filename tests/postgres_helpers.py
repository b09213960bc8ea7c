"""A real PostgreSQL server for the tests that need one: started once per session from the
machine's own PostgreSQL binaries (Debian's postgresql-15 package), on 127.0.0.1 and a free port,
with a fresh database per test.

Where PostgreSQL is not installed the tests skip, unless VISIONFLOW_REQUIRE_POSTGRES=1 (which CI
sets, after installing it), in which case they fail: a team set-up that is never run is not tested.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "visionflow"  # The role initdb creates; trust authentication, local connections only.


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens, and how to make databases on it."""

    host: str
    port: int

    def url(self, database: str, driver: str = "psycopg") -> str:
        """A SQLAlchemy URL for one database (driver "psycopg" for visionflow, "asyncpg" for Prefect)."""
        return f"postgresql+{driver}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """Create an empty database with a name of its own; returns the name."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return name


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl, newest version first; None where PostgreSQL is absent."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres_user(command: list[str]) -> list[str]:
    """initdb and the server refuse to run as root; run them as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_postgres(data_root: Path) -> tuple[PostgresServer, Path]:
    """initdb a cluster under data_root and start it; returns the server and its bin folder."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed (apt install postgresql-15)"
        if os.environ.get("VISIONFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message}, and VISIONFLOW_REQUIRE_POSTGRES=1 asks for it")
        pytest.skip(message)
    data_dir = data_root / "data"
    data_dir.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(data_root, "postgres")
        shutil.chown(data_dir, "postgres")
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust", "--no-sync"]
    subprocess.run(_as_postgres_user(initdb), check=True, capture_output=True, timeout=120)
    port = free_port()
    options = f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    start = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(data_dir / "server.log"), "-w"]
    subprocess.run(_as_postgres_user([*start, "start"]), check=True, capture_output=True, timeout=120)
    return PostgresServer("127.0.0.1", port), bin_dir


def stop_postgres(data_root: Path, bin_dir: Path) -> None:
    stop = [str(bin_dir / "pg_ctl"), "-D", str(data_root / "data"), "-m", "fast", "-w", "stop"]
    subprocess.run(_as_postgres_user(stop), check=False, capture_output=True, timeout=120)
    shutil.rmtree(data_root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (about 3 s to initdb and start)."""
    # /tmp rather than pytest's tmp_path: the postgres user must be able to reach the folder.
    data_root = Path(tempfile.mkdtemp(prefix="visionflow-postgres-"))
    os.chmod(data_root, 0o755)
    server, bin_dir = start_postgres(data_root)
    try:
        yield server
    finally:
        stop_postgres(data_root, bin_dir)

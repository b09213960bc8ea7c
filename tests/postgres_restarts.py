"""A PostgreSQL server of one test's own, which the test restarts and stops as an administrator
would (pg_ctl), a TCP proxy in front of a server that loses the answer to a COMMIT, and a scoring
run against a ledger on such a server, watched from outside.

The session's server (tests/postgres_helpers.py) is shared by many tests and is never stopped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine

from visionflow.home import LEDGER_URL_VARIABLE
from visionflow.ledger.connection import RECONNECT_VARIABLE

from tests.postgres_helpers import PostgresServer, _as_postgres_user, start_postgres, stop_postgres


@dataclass(frozen=True)
class OwnPostgresServer:
    """A running server of one test's own, with pg_ctl at hand to restart, stop and start it."""

    server: PostgresServer
    data_root: Path
    bin_dir: Path

    def _pg_ctl(self, *arguments: str) -> None:
        data = self.data_root / "data"
        # The same options start_postgres gives; -l, so that the server never holds this call's pipes open.
        options = f"-p {self.server.port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "server.log")]
        subprocess.run(_as_postgres_user([*command, "-w", *arguments]), check=True, capture_output=True, timeout=120)

    def restart(self) -> None:
        """Restart as an administrator does: fast mode ends every session, then the server starts again."""
        self._pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("start")


def own_postgres_server() -> Iterator[OwnPostgresServer]:
    """A server of the test's own (about 3 s to initdb and start), stopped and deleted afterwards;
    a test module makes a fixture of it (`yield from own_postgres_server()`)."""
    # /tmp rather than pytest's tmp_path: the postgres user must be able to reach the folder.
    data_root = Path(tempfile.mkdtemp(prefix="visionflow-postgres-restarts-"))
    data_root.chmod(0o755)
    server, bin_dir = start_postgres(data_root)
    try:
        yield OwnPostgresServer(server, data_root, bin_dir)
    finally:
        stop_postgres(data_root, bin_dir)  # Stops it if it runs, and deletes its files.


class CommitAnswerLosingProxy:
    """A TCP proxy on 127.0.0.1 to a PostgreSQL server. Once armed, the next COMMIT a client sends
    reaches the server, which commits it; its answer is dropped and the client's connection cut,
    as a network or a server lost at that moment would: the client cannot know the outcome."""

    def __init__(self, target: PostgresServer) -> None:
        self.target = target
        self.armed = threading.Event()  # The next COMMIT's answer is to be lost.
        self.lost = threading.Event()  # A COMMIT's answer was lost.
        self._answer_to_lose = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, database: str) -> str:
        return self.target.url(database).replace(f":{self.target.port}/", f":{self.port}/")

    def close(self) -> None:
        """Stop listening and cut every connection; the proxy's threads end."""
        _cut(self._listener)  # Its shutdown wakes the accepting thread.
        for connection in self._sockets:
            _cut(connection)
        for thread in self._threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in self._threads), "the proxy's threads end with it"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # Closed.
                return
            server = socket.create_connection((self.target.host, self.target.port))
            self._sockets += [client, server]
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pipe, args=(source, sink, upstream, client, server), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pipe(self, source, sink, upstream: bool, client: socket.socket, server: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                # The query text travels NUL-terminated in psycopg's Parse or Query message.
                if upstream and self.armed.is_set() and b"COMMIT\x00" in data:
                    self.armed.clear()
                    self._answer_to_lose.set()  # Before the COMMIT goes on: its answer may come at once.
                elif not upstream and self._answer_to_lose.is_set():
                    self._answer_to_lose.clear()
                    self.lost.set()
                    _cut(client)
                    _cut(server)
                    return
                sink.sendall(data)
        _cut(sink)


def _cut(connection: socket.socket) -> None:
    with suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        connection.close()


# A `visionflow score` run against a ledger on such a server, as the restart tests and
# benchmarks/ledger_restart_benchmark.py run it: the command as a user runs it.
VISIONFLOW = [sys.executable, "-m", "visionflow"]


def start_scoring(home: Path, ledger_url: str, drop: Path, reconnect_seconds: float | None = None) -> subprocess.Popen:
    """Start `visionflow score DROP --json` as a user would; its stdout and stderr go to files in home."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "VISIONFLOW_HOME": str(home)}
    environment[LEDGER_URL_VARIABLE] = ledger_url
    environment.pop(RECONNECT_VARIABLE, None)
    if reconnect_seconds is not None:
        environment[RECONNECT_VARIABLE] = str(reconnect_seconds)
    environment.pop("PREFECT_HOME", None)
    arguments = ["score", str(drop), "--json", "--workers", "1", "--batch-size", "64"]
    with open(home / "score.out", "w") as stdout, open(home / "score.err", "w") as stderr:
        return subprocess.Popen([*VISIONFLOW, *arguments], stdout=stdout, stderr=stderr, env=environment)


def finished(run: subprocess.Popen, home: Path) -> tuple[int, dict, str]:
    """Wait for a run: (exit code, its JSON summary, its stderr); the run is killed if the wait fails."""
    try:
        code = run.wait(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    stdout = (home / "score.out").read_text()
    return code, json.loads(stdout.strip().splitlines()[-1]), (home / "score.err").read_text()


def ledger_counts(ledger_url: str) -> dict[str, int]:
    """Rows of each kind the ledger holds now (a connection of the test's own)."""
    queries = {
        "reservations": "SELECT COUNT(*) FROM reservations",
        "predictions": "SELECT COUNT(*) FROM predictions",
        "distinct_predictions": "SELECT COUNT(DISTINCT (sha256, model_version)) FROM predictions",
        "files": "SELECT COUNT(*) FROM drop_files",
        "distinct_files": "SELECT COUNT(DISTINCT (drop_name, path)) FROM drop_files",
        "committed_parts": "SELECT COUNT(*) FROM parts WHERE state = 'committed'",
        "committed_rows": "SELECT COALESCE(SUM(rows), 0) FROM parts WHERE state = 'committed'",
        "pending_parts": "SELECT COUNT(*) FROM parts WHERE state <> 'committed'",
    }
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as connection:
            tables = connection.exec_driver_sql("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'reservations'")
            if not tables.scalar():
                return {name: 0 for name in queries}
            return {name: int(connection.exec_driver_sql(sql).scalar()) for name, sql in queries.items()}
    finally:
        engine.dispose()


def wait_until(done, run: subprocess.Popen, what: str) -> None:
    """Wait (at most 240 s) until done() while the run goes on."""
    deadline = time.monotonic() + 240
    while run.poll() is None and time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen (the run's exit code: {run.poll()})")

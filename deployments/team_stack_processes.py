"""The processes of the team stack: started detached, recorded on disk, checked and stopped by pid.

`team_stack up` exits while its pieces run on, so each piece is recorded in the state folder with
its pid and its start time (clock ticks since boot, from /proc), which tells the piece from a later
process that got the same pid. `down` stops every recorded piece and the processes below it (a
worker's flow runs run in sessions of their own, so a process group is not enough), then checks
that none is left and that every port is free.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from visionflow.atomic import write_text_atomically
from visionflow.errors import VisionflowError
from visionflow.processes.reaper import descendants, process_start

STOP_SECONDS = 30.0  # How long a piece may take to stop after SIGTERM before it is killed.
SECOND_STOP_SECONDS = 10.0  # The same after a second SIGTERM, which makes Prefect's worker exit at once.


class ProcessRecord(BaseModel):
    """One running piece of the stack."""

    name: str
    pid: int
    start_ticks: str  # The process's start time in clock ticks since boot (/proc/PID/stat).
    log: str  # Where its output goes.
    port: int | None = None  # Where it listens, for pieces that do.


class StackState(BaseModel):
    """Every piece `up` started and `down` has not stopped yet, by name."""

    processes: dict[str, ProcessRecord] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StackState:
        return cls.model_validate_json(path.read_text()) if path.exists() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, self.model_dump_json(indent=2))


def is_running(record: ProcessRecord | None) -> bool:
    """True while the recorded process (not a later one with its pid) runs and is no zombie."""
    return record is not None and process_start(record.pid)[0] == record.start_ticks


def record_of(name: str, pid: int, log: Path, port: int | None = None) -> ProcessRecord:
    """The record of a process that runs now; VisionflowError when it has already ended."""
    start, _ = process_start(pid)
    if start is None:
        raise VisionflowError(f"{name} exited at once; log: {log}")
    return ProcessRecord(name=name, pid=pid, start_ticks=start, log=str(log), port=port)


def spawn(name: str, command: list[str], environment: dict[str, str], log: Path, port: int | None = None):
    """Start command detached (a session of its own, output appended to log); return its Popen and record."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True,
        )  # fmt: skip
    time.sleep(0.05)  # /proc shows the start time once the child has been scheduled.
    return process, record_of(name, process.pid, log, port)


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def redis_answers(port: int) -> bool:
    """True when the Redis server on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(what: str, ready: Callable[[], bool], timeout: float, process=None, log: Path | None = None) -> float:
    """Poll ready() every half second until it is true; return the seconds it took.

    VisionflowError, in one line naming the log, when process (a Popen or a ProcessRecord) exits
    first or timeout seconds pass.
    """
    started = time.monotonic()
    where = f"; log: {log}" if log else ""
    while time.monotonic() - started < timeout:
        if ready():
            return time.monotonic() - started
        if process is not None and not _alive(process):
            raise VisionflowError(f"{what} exited before it was ready{where}")
        time.sleep(0.5)
    raise VisionflowError(f"{what} was not ready within {timeout:.0f} s{where}")


def _alive(process) -> bool:
    if isinstance(process, ProcessRecord):
        return is_running(process)
    return process.poll() is None


def signal_group(record: ProcessRecord, signal_number: int) -> None:
    """Send signal_number to the piece's process group (its session leader's group), if it still runs."""
    if is_running(record):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal_number)


def stop_process(record: ProcessRecord, second_sigterm: bool = False) -> tuple[list[int], list[int]]:
    """Stop a piece: SIGTERM to its group, then SIGKILL to whatever of it and below it still runs.

    second_sigterm: after STOP_SECONDS send SIGTERM again before killing; Prefect's worker turns the
    first into a graceful shutdown that sometimes hangs, and a second into an immediate exit.
    Returns the pids that had to be killed, and those still alive afterwards (none, normally).
    """
    below = descendants(record.pid) if is_running(record) else {}
    signal_group(record, signal.SIGTERM)
    _wait_for_exit(record, STOP_SECONDS)
    if second_sigterm and is_running(record):
        signal_group(record, signal.SIGTERM)
        _wait_for_exit(record, SECOND_STOP_SECONDS)
    killed = [record.pid] if is_running(record) else []
    signal_group(record, signal.SIGKILL)
    for pid, start in below.items():  # Flow runs and other children, in sessions of their own.
        if process_start(pid)[0] == start:
            killed.append(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while still_running(record, below) and time.monotonic() < deadline:
        time.sleep(0.1)
    return killed, still_running(record, below)


def still_running(record: ProcessRecord, below: dict[int, str]) -> list[int]:
    """The pids of the piece and of the processes recorded below it that still run."""
    pids = [record.pid] if is_running(record) else []
    return pids + [pid for pid, start in below.items() if process_start(pid)[0] == start]


def _wait_for_exit(record: ProcessRecord, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while is_running(record) and time.monotonic() < deadline:
        time.sleep(0.1)


def run_step(what: str, command: list[str], environment: dict[str, str], log: Path, timeout: float) -> str:
    """Run a command to its end, output appended to log; return its stdout's last line.

    VisionflowError in one line, naming the log, when it fails or takes longer than timeout seconds.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise VisionflowError(f"{what} did not finish within {timeout:.0f} s; log: {log}") from None
    with open(log, "a") as output:
        output.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise VisionflowError(f"{what} failed with exit code {result.returncode}; log: {log}")
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def wait_for_ports_free(ports: list[int], seconds: float = 10.0) -> list[int]:
    """The ports among ports still taken after up to seconds of waiting."""
    deadline = time.monotonic() + seconds
    while (taken := [port for port in ports if port_in_use(port)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return taken

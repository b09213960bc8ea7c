"""A command's children end with it, even when it is killed with SIGKILL.

A command starts processes of its own (Prefect's temporary server, decode workers, their
resource tracker); a killed command cannot stop them. Each command therefore starts a small
watcher in its own session (`python -m visionflow.processes.reaper PID`), which keeps a list of the
command's descendants and, once the command is gone, stops those still running: SIGTERM, then
SIGKILL after a grace period. On a system without /proc the watcher is not started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# How often the watcher looks, and how long a stopped process has before SIGKILL, in seconds.
POLL_SECONDS = 0.5
GRACE_SECONDS = 3.0


def start_reaper() -> subprocess.Popen | None:
    """Start the watcher for this process; None where /proc is missing."""
    if not os.path.isdir(f"/proc/{os.getpid()}"):
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "visionflow.processes.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def process_start(pid: int) -> tuple[str | None, int | None]:
    """(start time in clock ticks, parent pid) of a running process, or (None, None) when it has
    ended; the start time tells a process from a later one that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return (None, None) if fields[0] == "Z" else (fields[19], int(fields[1]))


def descendants(parent: int) -> dict[int, str]:
    """Every running process below parent, this watcher excepted: pid to start time."""
    children: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            start, ppid = process_start(int(name))
            if start:
                children.setdefault(ppid, []).append((int(name), start))
    found: dict[int, str] = {}
    frontier = [parent]
    while frontier:
        for pid, start in children.get(frontier.pop(), []):
            found[pid] = start
            frontier.append(pid)
    return found


def watch(parent: int, poll_seconds: float = POLL_SECONDS, grace_seconds: float = GRACE_SECONDS) -> None:
    """Record parent's descendants until parent has gone, then stop those still running."""
    parent_start, _ = process_start(parent)
    known: dict[int, str] = {}
    while parent_start and process_start(parent)[0] == parent_start:
        known.update(descendants(parent))
        time.sleep(poll_seconds)

    def alive() -> list[int]:
        return [pid for pid, start in known.items() if process_start(pid)[0] == start]

    for signal_number, wait_seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 0.0)):
        for pid in alive():
            try:
                os.kill(pid, signal_number)
            except OSError:  # Ended meanwhile.
                continue
        deadline = time.monotonic() + wait_seconds
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)


if __name__ == "__main__":
    watch(int(sys.argv[1]))

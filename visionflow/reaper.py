"""A command's children end with it, even when it is killed with SIGKILL.

A command starts processes of its own (Prefect's temporary server, decode workers, their
resource tracker); a killed command cannot stop them. Each command therefore starts a tiny
watcher in its own session, which keeps a list of the command's descendants and, once the
command is gone, stops those still running: SIGTERM, then SIGKILL after a grace period. On a
system without /proc the watcher is not started.
"""

from __future__ import annotations

import os
import subprocess
import sys

# How often the watcher looks, and how long a stopped process has before SIGKILL, in seconds.
POLL_SECONDS = 0.5
GRACE_SECONDS = 3.0

WATCHER = r"""
import os, signal, sys, time
parent, poll, grace = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])

def started(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[0] != "Z" and fields[19], int(fields[1])
    except (OSError, IndexError):
        return None, None

parent_start, _ = started(parent)
known = {}
while started(parent)[0] == parent_start and parent_start:
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            start, ppid = started(int(name))
            if start:
                children.setdefault(ppid, []).append((int(name), start))
    frontier = [parent]
    while frontier:
        for pid, start in children.get(frontier.pop(), []):
            if pid not in known:
                known[pid] = start
            frontier.append(pid)
    time.sleep(poll)
def alive():
    return [pid for pid, start in known.items() if started(pid)[0] == start]

def stop(pids, signal_number):
    for pid in pids:
        try:
            os.kill(pid, signal_number)
        except OSError:
            pass

stop(alive(), signal.SIGTERM)
deadline = time.monotonic() + grace
while alive() and time.monotonic() < deadline:
    time.sleep(0.1)
stop(alive(), signal.SIGKILL)
"""


def start_reaper() -> subprocess.Popen | None:
    """Start the watcher for this process; None where /proc is missing."""
    if not os.path.isdir(f"/proc/{os.getpid()}"):
        return None
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", WATCHER, str(os.getpid()), str(POLL_SECONDS), str(GRACE_SECONDS)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

"""A command killed with SIGKILL leaves nothing running: its watcher stops what it started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import VISIONFLOW
from tests.scoring_helpers import build_hostile_drop, register_tiny_model


def descendants(root: int) -> set[int]:
    """Every running process below root, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(name))
    found, frontier = set(), [root]
    while frontier:
        for pid in children.get(frontier.pop(), []):
            found.add(pid)
            frontier.append(pid)
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return {pid for pid in pids if running(pid)}


def test_children_and_grandchildren_of_a_killed_process_are_stopped():
    script = (
        "import subprocess, sys, time\n"
        "from visionflow.processes.reaper import start_reaper\n"
        "start_reaper()\n"
        "subprocess.Popen([sys.executable, '-c', 'import subprocess, time; "
        'subprocess.Popen(["sleep", "600"]); time.sleep(600)\'])\n'
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 10
    while len(descendants(parent.pid)) < 3 and time.monotonic() < deadline:  # Watcher, child, grandchild.
        time.sleep(0.1)
    started = descendants(parent.pid)
    time.sleep(1.0)  # The watcher's next look records the grandchild.
    parent.kill()
    parent.wait()
    assert len(started) >= 3 and wait_until_gone(started, 15) == set()


def test_a_killed_score_command_leaves_no_server_or_workers_behind(home, tmp_path):
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    environment["VISIONFLOW_HOME"] = str(home)
    command = subprocess.Popen(
        [*VISIONFLOW, "score", str(drop), "--workers", "2"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    server = set()
    while not server and time.monotonic() < deadline and command.poll() is None:
        server = {pid for pid in descendants(command.pid) if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        time.sleep(0.2)
    assert server, "the command's temporary Prefect server never started"
    time.sleep(1.0)  # The watcher's next look records it.
    started = descendants(command.pid)
    command.kill()
    command.wait()
    assert wait_until_gone(started, 20) == set(), "processes outlived the command killed with SIGKILL"

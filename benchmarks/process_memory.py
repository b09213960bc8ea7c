"""Peak memory of a process and every process it starts, read from /proc while they run.

The kernel keeps each process's peak resident set (VmHWM); a sampler thread finds the tree's
processes every interval and keeps the last peak each reported, so short-lived workers count.
"""

from __future__ import annotations

import threading
from pathlib import Path

ROLES = (  # Substring of the command line, and the name a reader knows the process by.
    ("prefect server start", "prefect server"),
    ("uvicorn", "prefect server (temporary, started by the command)"),
    ("visionflow.processes.reaper", "reaper (kills children when the command dies)"),
    ("multiprocessing", "worker"),
    ("prefect.engine", "flow run"),
    ("-m visionflow serve", "visionflow serve"),
    ("-m visionflow score", "visionflow score"),
)


class ProcessMemory(threading.Thread):
    """Samples /proc every interval seconds; peaks() gives MiB by role and process."""

    def __init__(self, root_pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.interval = root_pid, interval
        self._peaks: dict[int, tuple[str, float]] = {}  # pid: (role, peak MiB)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            for pid in self._tree():
                peak = _peak_mib(pid)
                if peak is not None:
                    self._peaks[pid] = (_role(pid, self._peaks.get(pid, ("", 0))[0]), peak)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peaks(self) -> dict[str, dict]:
        """Per role: how many processes, the largest peak and the sum of peaks, in MiB."""
        roles: dict[str, dict] = {}
        for role, peak in self._peaks.values():
            entry = roles.setdefault(role, {"processes": 0, "largest_peak_mib": 0.0, "sum_of_peaks_mib": 0.0})
            entry["processes"] += 1
            entry["largest_peak_mib"] = round(max(entry["largest_peak_mib"], peak), 1)
            entry["sum_of_peaks_mib"] = round(entry["sum_of_peaks_mib"] + peak, 1)
        return roles

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        tree, frontier = [], [self.root_pid]
        while frontier:
            pid = frontier.pop()
            tree.append(pid)
            frontier.extend(children.get(pid, []))
        return tree


def _peak_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _role(pid: int, known: str) -> str:
    if known:
        return known
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((role for pattern, role in ROLES if pattern in command), command[:60] or "other")

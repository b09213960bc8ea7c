"""A Dask cluster across three hosts made of network namespaces (tests/network_host_helpers.py).

The first host, "flow", runs a Prefect server, the Dask scheduler and, when a test starts it,
`visionflow score`; the hosts "worker-b" and "worker-c" each run one `dask worker` (a nanny and
one single-threaded worker process), as a team's cluster would: separate machines that reach the
flow's host over a network and the drop and the registry at the same path. The test process
watches the scheduler over the observer link.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from visionflow.processes.temporary_server import answers_health_check

from tests.network_host_helpers import Host, NetworkHosts, make_hosts

SCHEDULER_PORT = 8786
PREFECT_PORT = 4200
START_SECONDS = 180.0  # How long the servers and workers have to come up, on two busy cores.
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# Variables of the test process that must not reach the hosts: each process gets its own.
PRIVATE = ("PREFECT_API_URL", "PREFECT_HOME", "VISIONFLOW_HOME", "VISIONFLOW_LEDGER_URL")

# The drop the Dask-across-hosts test and benchmark score.
IMAGES = 20_000  # Image files in the drop, the copies included.
COPIES = 200  # Image files holding another file's bytes: their content is still predicted once.
BROKEN = {"broken/text.png": b"not an image, only text in a file named .png\n"}  # Rejected before decoding.
TRUNCATED = 3  # PNGs cut in half: rejected by the decoder, on a worker.
FILES = IMAGES + len(BROKEN) + TRUNCATED
# A model input of 128x128x3 pixels makes shards of at most 64 MiB / 49,152 bytes = 1,365 images
# (visionflow/processes/dask_shards.py, SHARD_BYTES): 15 shards, four in flight on two workers.
MODEL_SHAPE = (128, 128, 3)


def shards_held(dask_scheduler, worker: str) -> tuple[int, int]:
    """Run on the scheduler: (shards finished so far, shards the worker holds now); -1 held when
    the scheduler no longer knows the worker. The workers' warm-up tasks are not shards."""
    finished = {
        entry.key
        for entry in dask_scheduler.transition_log
        if entry.finish == "memory" and not str(entry.key).startswith("ready_worker")
    }
    state = dask_scheduler.workers.get(worker)
    return len(finished), len(state.processing) if state else -1


@dataclass
class DaskHosts:
    """The running cluster: its hosts, addresses, and a client on the observer link."""

    network: NetworkHosts
    scratch: Path
    environment: dict[str, str]  # What every process on the hosts starts with.
    observer: object  # A distributed.Client in the test process.
    workers: dict[str, str]  # Host name ("worker-b") to its worker's address.

    @property
    def flow_host(self) -> Host:
        return self.network.hosts[0]

    @property
    def scheduler(self) -> str:
        return f"tcp://{self.flow_host.address}:{SCHEDULER_PORT}"

    def score(self, drop: Path, home: Path, log: Path) -> subprocess.Popen:
        """Start `visionflow score DROP --dask-address SCHEDULER --json` on the flow's host."""
        arguments = [sys.executable, "-m", "visionflow", "score", str(drop), "--dask-address", self.scheduler, "--json"]
        return self.network.start(self.flow_host, arguments, {**self.environment, "VISIONFLOW_HOME": str(home)}, log)

    def worker_pid(self, name: str) -> int:
        """The process id of the worker (not its nanny) on host name."""
        address = self.workers[name]
        return self.observer.run(os.getpid, workers=[address])[address]

    def wait_until_holding(self, name: str, run: subprocess.Popen, held: int = 2, timeout: float = 300.0) -> float:
        """Wait until a shard has finished and the worker on host name holds held shards (one running,
        the next queued), so losing it now loses work; returns the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and run.poll() is None:
            finished, holding = self.observer.run_on_scheduler(shards_held, worker=self.workers[name])
            if finished >= 1 and holding >= held:
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"{name} never held {held} shards after one had finished (run exit code {run.poll()})")


@contextlib.contextmanager
def dask_hosts(scratch: Path, dask_settings: dict[str, str] | None = None) -> Iterator[DaskHosts]:
    """Three hosts with a Prefect server and a Dask scheduler on "flow" and a worker on each other;
    dask_settings (DASK_* variables) go to every process there. Everything is gone on exit."""
    from distributed import Client

    network = make_hosts(["flow", "worker-b", "worker-c"])
    observer = None
    try:
        flow = network.hosts[0]
        api_url = f"http://{flow.address}:{PREFECT_PORT}/api"
        environment = {name: value for name, value in os.environ.items() if name not in PRIVATE}
        environment.update(OFFLINE, **(dask_settings or {}), PREFECT_API_URL=api_url)
        logs = scratch / "logs"
        server = ["uvicorn", "--factory", "visionflow.processes.temporary_server:prefect_server_app",
                  "--host", flow.address, "--port", str(PREFECT_PORT), "--log-level", "error"]  # fmt: skip
        network.start(flow, [sys.executable, "-m", *server], _home(environment, scratch / "prefect-server"),
                      logs / "prefect-server.log")  # fmt: skip
        scheduler = ["distributed.cli.dask_scheduler", "--host", flow.address, "--port", str(SCHEDULER_PORT),
                     "--no-dashboard"]  # fmt: skip
        network.start(flow, [sys.executable, "-m", *scheduler], environment, logs / "scheduler.log")
        for host in network.hosts[1:]:
            name = host.role
            worker = ["distributed.cli.dask_worker", f"tcp://{flow.address}:{SCHEDULER_PORT}", "--host", host.address,
                      "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--name", name,
                      "--local-directory", str(scratch / name)]  # fmt: skip
            network.start(host, [sys.executable, "-m", *worker], _home(environment, scratch / f"prefect-{name}"),
                          logs / f"{name}.log")  # fmt: skip
        _wait_for(lambda: answers_health_check(api_url), "the Prefect server on the flow's host")
        observer = Client(f"tcp://{flow.address}:{SCHEDULER_PORT}", timeout=START_SECONDS)
        observer.wait_for_workers(2, timeout=START_SECONDS)
        workers = {info["name"]: address for address, info in observer.scheduler_info()["workers"].items()}
        yield DaskHosts(network, scratch, environment, observer, workers)
    finally:
        if observer is not None:
            observer.close(timeout=10)
        network.close()


def _home(environment: dict[str, str], prefect_home: Path) -> dict[str, str]:
    return {**environment, "PREFECT_HOME": str(prefect_home)}


def _wait_for(ready, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start within {START_SECONDS:.0f} s")
        time.sleep(0.2)


def build_drop(drop: Path) -> int:
    """IMAGES 12x12 RGB PNGs of random pixels, COPIES of them copies of others, and broken files;
    returns how many distinct decodable contents it holds."""
    images = IMAGES - COPIES
    pixels = np.random.default_rng(33).integers(0, 256, size=(images, 12, 12, 3), dtype=np.uint8)
    for index in range(images):
        folder = drop / f"batch-{index // 1000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[index]).save(folder / f"{index:05d}.png")
    (drop / "copies").mkdir()
    for index in range(COPIES):
        original = drop / f"batch-{index * 37 // 1000:02d}" / f"{index * 37:05d}.png"
        shutil.copyfile(original, drop / "copies" / f"copy of {index * 37:05d}.png")
    (drop / "broken").mkdir()
    for name, data in BROKEN.items():
        (drop / name).write_bytes(data)
    for index in range(TRUNCATED):
        encoded = io.BytesIO()
        Image.fromarray(pixels[index][::-1]).save(encoded, format="PNG")
        (drop / "broken" / f"truncated-{index}.png").write_bytes(encoded.getvalue()[: len(encoded.getvalue()) // 2])
    assert sum(1 for path in drop.rglob("*") if path.is_file()) == FILES
    return images


def fresh_home(home: Path, registry: Path) -> Path:
    shutil.copytree(registry / "models", home / "models")
    return home


def warning_after(output: str, worker: str, fault_time: float) -> tuple[int, float]:
    """From the run's log: (shards the lost worker held, seconds from the fault to the warning)."""
    line = re.search(
        rf"^(\d\d:\d\d:\d\d\.\d+) \| WARNING .*Dask worker {re.escape(worker)} left the cluster during the score "
        r"shards; the (\d+) shards it held run again on the others$",
        output,
        re.MULTILINE,
    )
    assert line, f"no warning names the lost worker {worker}:\n{output[-3000:]}"
    fault = datetime.fromtimestamp(fault_time)
    warned = datetime.combine(fault.date(), datetime.strptime(line.group(1), "%H:%M:%S.%f").time())
    seconds = (warned - fault).total_seconds()
    return int(line.group(2)), seconds + 86_400 if seconds < -60 else seconds  # Past midnight: the next day.

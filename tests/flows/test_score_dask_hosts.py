"""`visionflow score` on a Dask cluster across three hosts survives losing a worker host mid-run.

The hosts are network namespaces (tests/network_host_helpers.py): the flow, a Prefect server and
the Dask scheduler on one, a Dask worker on each of the other two (tests/dask_host_helpers.py).
A drop of 20,000 images (and a few broken files) is scored through the real command with
--dask-address, and once a shard has finished and worker B holds two, worker B is lost: its host's
link goes down (packets vanish, nobody is told), or its worker process is SIGKILLed. The run must
finish (exit 0) with every file in exactly one row, each content predicted and committed once, the
same rows as the default path (no Dask, one machine), and a warning naming the lost worker.
Skipped with the reason where `ip netns add` is refused, unless VISIONFLOW_REQUIRE_NETNS=1.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from PIL import Image

from tests.conftest import VISIONFLOW
from tests.dask_host_helpers import PRIVATE, dask_hosts
from tests.network_host_helpers import REQUIRE_VARIABLE, ip, make_hosts, netns_refusal, require_netns
from tests.scoring_helpers import register_tiny_model

pytestmark = pytest.mark.dask_hosts

IMAGES = 20_000  # Image files in the drop, the copies included.
COPIES = 200  # Image files holding another file's bytes: their content is still predicted once.
BROKEN = {"broken/text.png": b"not an image, only text in a file named .png\n"}  # Rejected before decoding.
TRUNCATED = 3  # PNGs cut in half: rejected by the decoder, on a worker.
FILES = IMAGES + len(BROKEN) + TRUNCATED
# A model input of 128x128x3 pixels makes shards of at most 64 MiB / 49,152 bytes = 1,365 images
# (visionflow/processes/dask_shards.py, SHARD_BYTES): 15 shards, four in flight on two workers.
MODEL_SHAPE = (128, 128, 3)
# What docs/SCALING.md asks of a team's scheduler and workers: a connection whose packets go
# unacknowledged for 15 s is dead, so a host cut off is noticed in 15 to 30 s (Dask's default,
# 30 s, measured 30-52 s).
TEAM_DASK_SETTINGS = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "15s"}
RUN_SECONDS = 400  # The longest a score run may take here (measured: 25-58 s on two cores).
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scene:
    """The drop, the registry that scores it, and what the default path made of it."""

    drop: Path
    registry: Path  # A home holding only the registered model, copied into each run's home.
    contents: int  # Distinct decodable contents in the drop.
    summary: dict  # The default path's --json summary.
    predictions: pd.DataFrame  # The default path's rows, sorted by path.
    rejections: pd.DataFrame
    ledger: dict[str, int]  # The default path's ledger, counted.


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Scene:
    require_netns()  # Before the costly part: where the hosts cannot be made, nothing else is.
    root = tmp_path_factory.mktemp("dask-hosts")
    register_tiny_model(root / "registry" / "models", shape=MODEL_SHAPE)
    contents = build_drop(root / "drop")
    home = fresh_home(root / "here", root / "registry")
    environment = {name: value for name, value in os.environ.items() if name not in PRIVATE}
    result = subprocess.run(
        [*VISIONFLOW, "score", str(root / "drop"), "--json"], capture_output=True, text=True, check=False,
        env={**environment, "VISIONFLOW_HOME": str(home)}, timeout=RUN_SECONDS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    predictions, rejections = rows(summary)
    ledger = ledger_counts(home)
    assert ledger["predictions"] == ledger["distinct_contents"] == contents and ledger["reservations"] == 0
    return Scene(root / "drop", root / "registry", contents, summary, predictions, rejections, ledger)


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


def rows(summary: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's (predictions, rejections), each sorted by path."""
    found = []
    for folder in (summary["predictions_path"], summary["rejections_path"]):
        table = ds.dataset(folder, format="parquet").to_table().to_pandas() if Path(folder).is_dir() else None
        found.append(pd.DataFrame() if table is None else table.sort_values("path", ignore_index=True))
    return found[0], found[1]


def ledger_counts(home: Path) -> dict[str, int]:
    """What the home's SQLite ledger holds, counted."""
    queries = {
        "predictions": "SELECT COUNT(*) FROM predictions",
        "distinct_contents": "SELECT COUNT(DISTINCT sha256) FROM predictions",
        "files": "SELECT COUNT(*) FROM drop_files",
        "distinct_paths": "SELECT COUNT(DISTINCT path) FROM drop_files",
        "committed_rows": "SELECT COALESCE(SUM(rows), 0) FROM parts WHERE state = 'committed'",
        "uncommitted_parts": "SELECT COUNT(*) FROM parts WHERE state <> 'committed'",
        "reservations": "SELECT COUNT(*) FROM reservations",
    }
    with sqlite3.connect(home / "ledger" / "scoring.sqlite") as ledger:
        return {name: ledger.execute(query).fetchone()[0] for name, query in queries.items()}


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


def test_without_iproute2_the_hosts_are_skipped_with_the_reason_unless_required(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # A folder without the ip command.
    assert netns_refusal() == "the ip command (iproute2) is not installed"
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="iproute2"):
        require_netns()
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=rf"\(iproute2\) is not installed \({REQUIRE_VARIABLE}=1"):
        require_netns()


def answers(network, client_role: str, url: str) -> bool:
    """Whether url answers a GET from the host client_role within 3 s."""
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)"
    command = ["ip", "netns", "exec", network.host(client_role).namespace, sys.executable, "-c", probe]
    return subprocess.run(command, capture_output=True, check=False, timeout=30).returncode == 0


def test_the_hosts_reach_each_other_until_a_link_goes_down_and_leave_nothing_behind(tmp_path: Path):
    require_netns()
    network = make_hosts(["flow", "worker-b", "worker-c"])
    try:
        server_host = network.host("worker-b")
        server = [sys.executable, "-m", "http.server", "8000", "--bind", server_host.address]
        network.start(server_host, server, dict(os.environ), tmp_path / "server.log")
        url = f"http://{server_host.address}:8000/"
        deadline = time.monotonic() + 30
        while not answers(network, "worker-c", url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answers(network, "flow", url) and answers(network, "worker-c", url)
        network.link_down(server_host)
        assert not answers(network, "worker-c", url)  # Unanswered: the packets vanish.
        assert network.pids()
    finally:
        network.close()  # Fails naming whatever is left.
    namespaces = ip("netns", "list").stdout
    assert not any(host.namespace in namespaces for host in network.hosts)
    assert not network.pids()


@pytest.mark.parametrize("fault", ["link-down", "worker-killed"])
def test_a_worker_host_lost_mid_run_costs_time_not_rows(scene: Scene, tmp_path: Path, fault: str):
    home = fresh_home(tmp_path / "home", scene.registry)
    with dask_hosts(tmp_path / "cluster", TEAM_DASK_SETTINGS) as cluster:
        lost_worker, lost_pid = cluster.workers["worker-b"], cluster.worker_pid("worker-b")
        started = time.monotonic()
        run = cluster.score(scene.drop, home, tmp_path / "score.log")
        cluster.wait_until_holding("worker-b", run)
        fault_time, fault_after = time.time(), time.monotonic() - started
        if fault == "link-down":
            cluster.network.link_down(cluster.network.host("worker-b"))
        else:
            os.kill(lost_pid, signal.SIGKILL)
        code = run.wait(timeout=RUN_SECONDS)
        seconds = time.monotonic() - started
    output = (tmp_path / "score.log").read_text()
    assert code == 0, output[-3000:]

    held, warned_after = warning_after(output, lost_worker, fault_time)
    assert held >= 1  # The loss cost work that ran again elsewhere.
    log.info("%s %.1f s into the run: warned %.1f s later, run %.1f s", fault, fault_after, warned_after, seconds)
    summary = json.loads(next(line for line in reversed(output.splitlines()) if line.startswith('{"drop"')))
    for field in ("files", "scored", "rejected", "contents_predicted", "class_counts"):
        assert summary[field] == scene.summary[field], field
    assert summary["files"] == FILES and summary["contents_predicted"] == scene.contents

    predictions, rejections = rows(summary)
    paths = list(predictions["path"]) + list(rejections["path"])
    assert len(paths) == len(set(paths)) == FILES  # Every file in exactly one row.
    expected = scene.predictions
    for column in ("path", "sha256", "label"):
        assert list(predictions[column]) == list(expected[column]), column
    columns = [name for name in expected.columns if name.startswith("probability_")] + ["confidence"]
    assert np.allclose(predictions[columns].to_numpy(), expected[columns].to_numpy(), atol=1e-5)
    assert list(rejections["path"]) == list(scene.rejections["path"])
    assert list(rejections["reason"]) == list(scene.rejections["reason"])

    # Each content predicted and committed once, each file's row committed once, nothing left reserved.
    assert ledger_counts(home) == scene.ledger
    assert scene.ledger["files"] == scene.ledger["distinct_paths"] == scene.ledger["committed_rows"] == FILES

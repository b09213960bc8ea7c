"""`visionflow score` in two processes, each with its own VISIONFLOW_HOME, sharing one PostgreSQL
ledger (VISIONFLOW_LEDGER_URL): drops that share images, scored at the same time, predict every
image once, and every file of each drop ends in exactly one row of its drop's predictions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from sqlalchemy import create_engine

from visionflow.home import LEDGER_URL_VARIABLE
from visionflow.ledger.ledger import PredictionLedger, reservation_owner

from tests.conftest import VISIONFLOW, write_image
from tests.postgres_helpers import free_port
from tests.scoring_helpers import register_tiny_model

SHARED_IMAGES = 300  # Identical contents in both drops.
OWN_IMAGES = 100  # Contents in one drop only, per drop.
DROPS = ("monday", "tuesday")


def score_command(home: Path, ledger_url: str, drop: Path) -> subprocess.Popen:
    """Start `visionflow score DROP --json` as a user would, on the test session's Prefect server;
    its stdout and stderr go to files in home (a pipe nobody reads would stall it)."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "VISIONFLOW_HOME": str(home)}
    environment[LEDGER_URL_VARIABLE] = ledger_url
    environment.pop("PREFECT_HOME", None)
    # One decoding process each: the machine running the tests may have two cores.
    arguments = ["score", str(drop), "--json", "--workers", "1", "--batch-size", "16"]
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "score.out", "w") as stdout, open(home / "score.err", "w") as stderr:
        return subprocess.Popen([*VISIONFLOW, *arguments], stdout=stdout, stderr=stderr, env=environment)


def finished(run: subprocess.Popen, home: Path) -> tuple[int, str, str]:
    """Wait for a run started by score_command: (exit code, stdout, stderr)."""
    code = run.wait(timeout=300)
    return code, (home / "score.out").read_text(), (home / "score.err").read_text()


def build_drops(root: Path) -> dict[str, Path]:
    """Two drops holding the same SHARED_IMAGES (under other names) and OWN_IMAGES of their own."""
    drops = {name: root / "drops" / name for name in DROPS}
    (drops["monday"] / "shared").mkdir(parents=True)
    (drops["tuesday"] / "copied" / "from monday").mkdir(parents=True)
    for index in range(SHARED_IMAGES):
        original = write_image(root / "originals" / f"{index}.png", (index % 255, 90, 160), size=40, seed=index)
        shutil.copyfile(original, drops["monday"] / "shared" / f"{index:04d}.png")
        shutil.copyfile(original, drops["tuesday"] / "copied" / "from monday" / f"image {index}.png")
    for offset, drop in enumerate(drops.values(), start=1):
        for index in range(OWN_IMAGES):
            write_image(drop / "own" / f"{index}.png", (40, 200, 40), size=40, seed=100_000 * offset + index)
    return drops


def runs_holding_reservations(ledger_url: str, besides: str) -> int:
    """How many runs other than besides hold reservations in the ledger right now."""
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as connection:
            query = "SELECT COUNT(DISTINCT owner) FROM reservations WHERE owner <> %(owner)s"
            return connection.exec_driver_sql(query, {"owner": besides}).scalar()
    finally:
        engine.dispose()


def wait_until_both_runs_reserve(ledger_url: str, holder: str, runs: list[subprocess.Popen]) -> bool:
    """Wait (at most 240 s) until both runs hold reservations of their own; False if they did not."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and all(run.poll() is None for run in runs):
        if runs_holding_reservations(ledger_url, holder) == len(runs):
            return True
        time.sleep(0.1)
    return False


def files_of(drop: Path) -> set[str]:
    return {str(path.relative_to(drop)) for path in drop.rglob("*") if path.is_file()}


@pytest.mark.postgres
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("prefect_server")
def test_two_homes_sharing_a_postgresql_ledger_predict_each_image_once(postgres_server, tmp_path):
    ledger_url = postgres_server.url(postgres_server.create_database("shared_ledger"))
    homes = {name: tmp_path / f"home-{name}" for name in DROPS}
    version = register_tiny_model(homes["monday"] / "models")
    # A shared ledger keys predictions by model version: both homes hold the same registered models.
    shutil.copytree(homes["monday"] / "models", homes["tuesday"] / "models")
    drops = build_drops(tmp_path)
    shared = {hashlib.sha256(path.read_bytes()).hexdigest() for path in (drops["monday"] / "shared").iterdir()}
    assert len(shared) == SHARED_IMAGES

    # A third run holds the shared contents while both runs start, and gives them up once both hold
    # reservations of their own: the two then race for the shared contents at the same moment,
    # whatever the difference in their start-up times.
    with PredictionLedger(ledger_url) as ledger:
        holder = reservation_owner()
        assert ledger.reserve_contents(shared, version, holder) == shared
        runs = [score_command(homes[name], ledger_url, drops[name]) for name in DROPS]
        try:
            both_reserved = wait_until_both_runs_reserve(ledger_url, holder, runs)
        finally:
            ledger.release_contents(holder)
    try:
        outcomes = {name: finished(run, homes[name]) for name, run in zip(DROPS, runs, strict=True)}
    finally:
        for run in runs:
            if run.poll() is None:  # Only after a failure above: a run the test started does not outlive it.
                run.kill()
    for code, _, stderr in outcomes.values():
        assert code == 0, stderr[-3000:]
    assert both_reserved, "both runs held reservations at the same time"
    summaries = {name: json.loads(stdout.strip().splitlines()[-1]) for name, (_, stdout, _) in outcomes.items()}

    predicted = sum(summary["contents_predicted"] for summary in summaries.values())
    assert predicted == SHARED_IMAGES + 2 * OWN_IMAGES, "each distinct content was predicted once, by one run"
    with PredictionLedger(ledger_url) as ledger:
        for name, summary in summaries.items():
            expected = files_of(drops[name])
            assert summary["files"] == len(expected) == SHARED_IMAGES + OWN_IMAGES and summary["rejected"] == 0
            assert summary["scored"] + summary["already_scored"] == len(expected)
            rows = ds.dataset(summary["predictions_path"], format="parquet").to_table().to_pandas()
            assert sorted(rows["path"]) == sorted(expected), "every file has exactly one row"
            assert ledger.accepted_count(name, version) == len(expected)
            known = ledger.known_probabilities(rows["sha256"], version)
            written = [stamp.isoformat(timespec="microseconds") for stamp in rows["scored_at"]]
            assert [known[sha256][1] for sha256 in rows["sha256"]] == written, "every row agrees with the ledger"


@pytest.mark.usefixtures("prefect_server")
def test_an_unreachable_postgresql_ledger_stops_the_command_with_exit_9_and_the_way_out(home, tmp_path):
    pytest.importorskip("psycopg")
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    write_image(drop / "x.png", (200, 30, 30))
    url = f"postgresql+psycopg://scorer:s3cret@127.0.0.1:{free_port()}/ledger"
    code, stdout, stderr = finished(score_command(home, url, drop), home)
    assert code == 9, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"visionflow: cannot reach the scoring ledger {url.replace('s3cret', '***')} (")
    assert "VISIONFLOW_LEDGER_URL" in last and "Traceback" not in stderr and "s3cret" not in stdout + stderr
    assert json.loads(stdout.strip().splitlines()[-1])["exit_code"] == 9

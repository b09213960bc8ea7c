"""Two workers on the team stack: score-drops runs that share a burst score each file exactly once.

`team_stack up --workers 2` starts two process workers on the pool and lets two score-drops runs
go at once. Two runs are started through the balancer, then twelve drops of three images go into
the inbox with _READY: both runs must hold a concurrency slot at once (neither waits for the
other, and they overlap in time), every drop must reach done/, each file must have one prediction
row and one ledger row, no content may be predicted twice, and every flow run must be COMPLETED.
`down` must then leave no process and no port. About two minutes on two idle cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import write_image
from tests.deployments.team_ha_helpers import (
    assert_nothing_left,
    free_base_port,
    query_prefect_database,
    require_stack_tools,
    run_stack,
    stack_logs,
    start_run,
    take_down,
    wait_for_run,
)
from tests.scoring_helpers import register_tiny_model

pytestmark = pytest.mark.team_ha

DROPS, IMAGES = 12, 3
RUN_SECONDS = 300  # The longest the runs may take to score the burst on two busy cores.
WORKERS = ["visionflow-team-worker", "visionflow-team-worker-2"]
RUN_STATES = """
    SELECT flow_run.id::text, flow.name, flow_run.state_type::text, flow_run.state_name FROM flow_run
    JOIN flow ON flow.id = flow_run.flow_id
"""


def put_burst(inbox: Path) -> None:
    """Write every drop under staging/ first, then rename them all into the inbox within a moment."""
    staging = inbox.parent / "staging"
    for drop in range(DROPS):
        for index in range(IMAGES):
            write_image(staging / f"drop-{drop:02d}" / f"{index}.png", (200, 60, 60), seed=1000 * drop + index)
        (staging / f"drop-{drop:02d}" / "_READY").touch()
    for drop in range(DROPS):
        (staging / f"drop-{drop:02d}").rename(inbox / f"drop-{drop:02d}")


def predicted_rows(home: Path, drop: str) -> list[tuple[str, str]]:
    import pyarrow.dataset as ds

    parts = [str(path) for path in (home / "predictions" / drop / "predictions").glob("part-*.parquet")]
    table = ds.dataset(parts).to_table(columns=["path", "sha256"]) if parts else None
    return sorted(zip(table["path"].to_pylist(), table["sha256"].to_pylist(), strict=True)) if table else []


def final(run) -> bool:
    return bool(run.state and run.state.is_final())


def test_two_workers_share_a_burst_and_score_each_file_once():
    require_stack_tools()
    root = Path(tempfile.mkdtemp(prefix="visionflow-team-load-"))
    os.chmod(root, 0o755)  # User postgres must reach its data folder when the test runs as root.
    home, state = root / "home", root / "state"
    register_tiny_model(home / "models")
    base = free_base_port()
    location = ["--home", str(home), "--state", str(state)]
    started = time.monotonic()
    try:
        result, up = run_stack("up", *location, "--base-port", str(base), "--workers", "2")
        assert result.returncode == 0, f"{result.stderr[-3000:]}\n{stack_logs(state)}"
        print(f"up: {up['seconds']} s")
        names = [piece["name"] for piece in up["pieces"]]
        assert names[-3:] == ["worker", "worker-2", "inbox-watcher"], names
        assert all(piece["state"] == "started" for piece in up["pieces"]), up
        api_url, postgres_port = up["api_url"], base + 4
        workers = query_prefect_database(postgres_port, "SELECT name FROM worker ORDER BY name")
        assert [name for (name,) in workers] == WORKERS
        limit = query_prefect_database(postgres_port, """
            SELECT concurrency_limit_v2."limit" FROM deployment
            JOIN concurrency_limit_v2 ON concurrency_limit_v2.id = deployment.concurrency_limit_id
            WHERE deployment.name = 'score-drops'
        """)  # fmt: skip
        assert limit == [(2,)], "score-drops may run once per worker at a time"

        # Both runs are waiting to start when the drops arrive, so the inbox's event starts no third run
        # ahead of them; each run claims drops one at a time until a look finds none it has not handled.
        runs = [start_run(api_url, "score-drops/score-drops", {}) for _ in range(2)]
        dropped_at = time.monotonic()
        put_burst(home / "drops" / "inbox")
        finished = [wait_for_run(api_url, run.id, final, RUN_SECONDS, state) for run in runs]
        print(f"{DROPS} drops scored {time.monotonic() - dropped_at:.1f} s after they were put in the inbox")
        assert all(run.state.is_completed() for run in finished), f"{finished}\n{stack_logs(state)}"
        first, second = sorted(finished, key=lambda run: run.start_time)
        assert second.start_time < first.end_time, "the two runs scored at the same time"

        done = home / "drops" / "done"
        assert sorted(path.name for path in done.iterdir()) == [f"drop-{drop:02d}" for drop in range(DROPS)]
        assert not list((home / "drops" / "inbox").iterdir()) and not list((home / "drops" / "processing").iterdir())
        expected = {
            drop.name: sorted((path.name, hashlib.sha256(path.read_bytes()).hexdigest()) for path in drop.glob("*.png"))
            for drop in done.iterdir()
        }
        predicted = 0
        for drop, files in expected.items():
            assert len(files) == IMAGES and predicted_rows(home, drop) == files, drop
            for report in (home / "predictions" / drop / "reports").glob("scoring-*.json"):
                predicted += json.loads(report.read_text())["counts"]["contents_predicted"]
        assert predicted == DROPS * IMAGES, "no content was predicted twice"
        ledger = query_prefect_database(
            postgres_port, "SELECT drop_name, path, sha256, count(*) FROM drop_files GROUP BY 1, 2, 3", "ledger"
        )
        assert sorted((drop, path, digest) for drop, path, digest, _count in ledger) == sorted(
            (drop, path, digest) for drop, files in expected.items() for path, digest in files
        )
        assert {count for *_key, count in ledger} == {1}, "one ledger row per file"
        assert query_prefect_database(postgres_port, "SELECT count(*) FROM predictions", "ledger") == [
            (DROPS * IMAGES,)
        ]

        # A run the inbox's event started after the two must end too; none may crash or wait for a slot first.
        deadline = time.monotonic() + RUN_SECONDS
        while (states := query_prefect_database(postgres_port, RUN_STATES)) and time.monotonic() < deadline:
            if all(state_type == "COMPLETED" for _id, _flow, state_type, _name in states):
                break
            time.sleep(1)
        assert all(state_type == "COMPLETED" for _id, _flow, state_type, _name in states), states
        waited = query_prefect_database(postgres_port, """
            SELECT DISTINCT flow_run_id::text FROM flow_run_state WHERE name = 'AwaitingConcurrencySlot'
        """)  # fmt: skip
        assert not {str(run.id) for run in runs} & {flow_run_id for (flow_run_id,) in waited}, waited
        print(f"score-drops runs: {len(states)}, of which waited for a slot: {len(waited)}")
    finally:
        result, down, recorded = take_down(location, state)
        print(f"test: {time.monotonic() - started:.1f} s in all; down: {down.get('seconds')} s")
        shutil.rmtree(root, ignore_errors=True)

    assert_nothing_left(result, down, recorded, base)
    assert {piece["state"] for piece in down["pieces"]} <= {"stopped", "killed"}, down
    assert {"worker", "worker-2"} <= set(recorded)

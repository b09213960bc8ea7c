"""Ledger restart benchmark: what a PostgreSQL restart or stop costs a `visionflow score` run on a shared ledger.

    .venv/bin/python benchmarks/ledger_restart_benchmark.py [--repeats 2] [--json]   # about 2-3 minutes a repeat

A PostgreSQL server of the benchmark's own (tests/postgres_restarts.py, restarted and stopped with
pg_ctl as an administrator would) holds the scoring ledger, a fresh database for every run, beside
a temporary Prefect server. Every run scores the same drop (--images random 16x16 PNGs, each its own
content) with the tests' tiny model (12x12x3 input) through the real `visionflow score DROP --json
--workers 1 --batch-size 64` (the helpers of tests/postgres_restarts.py, which the restart tests use), with the
default reconnect bound (60 s). The fault lands as soon as the run holds its reservations, that is
once it has listed and hashed the drop and is predicting, before its first part commits:

- none: nothing happens to the server, the baseline.
- restart: `pg_ctl -m fast restart` (every session ended, the server back about a second later).
- stop-30s, stop-90s: `pg_ctl -m fast stop`, then start again after 30 s or 90 s (90 s is past the
  bound: the run stops with exit 9, and the same command is run again once the server is back).

The sides take turns (in reverse order on odd repeats), so their differences hold on a noisy
machine. Measured per run: its exit code, the command's wall seconds, the flow's own seconds, the
images it scored, the waits it logged, seconds from the server being back to the run's first
committed part and to its "answers again" log line; for a run that does not exit 0, the seconds
from the stop to its exit, its last line, and the rerun's exit code, wall seconds and images scored.
Prints a markdown table, or with --json one JSON object; both are written to --output. Progress
goes to stderr as one JSON line per run. The scratch folder is temporary and removed at the end,
unless --keep; the PostgreSQL server is stopped and its files deleted. Where PostgreSQL's initdb is
missing, it says so in one line and exits with code 4.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # The helpers live in the tests package at the repository's root.
from load_benchmark import new_report, scratch_folder, write_report  # noqa: E402

from visionflow.home import configure_environment  # noqa: E402

FAULTS = ("none", "restart", "stop-30s", "stop-90s")
POLL_SECONDS = 0.05  # How often the run, and the ledger for its first commit, are looked at.
SKIPPED_EXIT_CODE = 4  # As visionflow's own BadInputError: the machine cannot run this, and says why.
PROGRESS_LEFT_OUT = ("ledger_lines", "last_line")  # Too long for a progress line; kept in the results.


def build_scene(scratch: Path, images: int) -> tuple[Path, Path]:
    """A home holding the tests' tiny model as champion, and a drop of images distinct PNGs."""
    from recovery_benchmark import write_drop

    from tests.scoring_helpers import register_tiny_model

    home, drop = scratch / "home", scratch / "drop"
    register_tiny_model(home / "models")
    write_drop(drop, images)
    return home, drop


def log_time(line: str) -> float | None:
    """Seconds since the epoch of a Prefect console line "HH:MM:SS.mmm | LEVEL | ...", taken as today's."""
    try:
        stamp = datetime.strptime(f"{datetime.now():%Y-%m-%d} {line[:12]}", "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    return stamp.timestamp()


def apply_fault(own, run, fault: str) -> float | None:
    """Restart or stop the server as fault says, and start it again; returns the seconds from the stop
    to the run's exit where the run ended while the server was down, else None."""
    if fault == "restart":
        own.restart()
        return None
    own.stop()
    stopped = time.monotonic()
    try:
        while time.monotonic() - stopped < int(fault.removeprefix("stop-").removesuffix("s")) and run.poll() is None:
            time.sleep(POLL_SECONDS)
        return round(time.monotonic() - stopped, 2) if run.poll() is not None else None
    finally:
        own.start()


def run_side(own, home: Path, drop: Path, fault: str, repeat: int) -> dict:
    """One score run on a fresh ledger database, the server restarted or stopped as fault says."""
    from tests.postgres_restarts import finished, ledger_counts, start_scoring, wait_until

    shutil.rmtree(home / "predictions", ignore_errors=True)
    url = own.server.url(own.server.create_database("ledger"))
    started = time.monotonic()
    run = start_scoring(home, url, drop)
    back = back_wall = exited_after_stop = committed_at = None
    fault_applied = fault != "none"
    try:
        if fault != "none":
            try:
                wait_until(lambda: ledger_counts(url)["reservations"], run, "reservations")
            except AssertionError:
                fault_applied = False  # The run ended before it held any: no fault, and the table says so.
            if fault_applied:
                exited_after_stop = apply_fault(own, run, fault)
                back, back_wall = time.monotonic(), time.time()
        while run.poll() is None:
            if back is not None and committed_at is None and ledger_counts(url)["committed_parts"]:
                committed_at = time.monotonic()
            time.sleep(POLL_SECONDS)
        total = time.monotonic() - started
    except BaseException:
        run.kill()  # The benchmark failed, or was interrupted: the run does not outlive it.
        run.wait()
        raise
    code, summary, stderr = finished(run, home)
    lines = [line for line in stderr.splitlines() if "scoring ledger" in line]
    answered = next((log_time(line) for line in lines if "answers again" in line), None)
    result = {"fault": fault, "repeat": repeat, "fault_applied": fault_applied, "exit_code": code,
              "total_seconds": round(total, 2), "flow_seconds": summary.get("seconds"), "scored": summary.get("scored"),
              "waits_logged": sum("retrying for up to" in line for line in lines),
              "back_to_first_commit_seconds": None if committed_at is None else round(committed_at - back, 2),
              "back_to_answers_again_log_seconds": None if answered is None else round(answered - back_wall, 2),
              "ledger_lines": lines}  # fmt: skip
    if code != 0:
        rerun_started = time.monotonic()
        rerun_code, rerun, _ = finished(start_scoring(home, url, drop), home)
        result.update(stop_to_exit_seconds=exited_after_stop, last_line=(stderr.strip().splitlines() or [""])[-1],
                      rerun_exit_code=rerun_code, rerun_seconds=round(time.monotonic() - rerun_started, 2),
                      rerun_scored=rerun.get("scored"), rerun_already_scored=rerun.get("already_scored"))  # fmt: skip
    return result


def run_sides(arguments, scratch: Path) -> list[dict]:
    from prefect.testing.utilities import prefect_test_harness

    from tests.postgres_restarts import own_postgres_server

    home, drop = build_scene(scratch, arguments.images)
    results = []
    with prefect_test_harness(server_startup_timeout=120):
        for own in own_postgres_server():  # One server for every run; stopped and deleted after the last.
            for repeat in range(arguments.repeats):
                for fault in arguments.faults if repeat % 2 == 0 else list(reversed(arguments.faults)):
                    results.append(run_side(own, home, drop, fault, repeat))
                    progress = {name: value for name, value in results[-1].items() if name not in PROGRESS_LEFT_OUT}
                    print(json.dumps(progress), file=sys.stderr, flush=True)
    return results


def table(results: list[dict]) -> str:
    lines = ["| fault | repeat | exit | total s | flow s | scored | waits logged | back to first commit s "
             "| back to answers-again log s | stop to exit s | rerun exit | rerun s | rerun scored |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for result in results:
        fault = (
            result["fault"] if result["fault_applied"] or result["fault"] == "none" else f"{result['fault']} (missed)"
        )
        cells = [fault, result["repeat"], result["exit_code"], result["total_seconds"], result["flow_seconds"],
                 result["scored"], result["waits_logged"], result["back_to_first_commit_seconds"],
                 result["back_to_answers_again_log_seconds"], result.get("stop_to_exit_seconds"),
                 result.get("rerun_exit_code"), result.get("rerun_seconds"), result.get("rerun_scored")]  # fmt: skip
        lines.append("| " + " | ".join("-" if cell is None else str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000, help="images in the drop every run scores")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each fault, the faults taking turns")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=["none", "restart", "stop-30s"],
                        help="what happens to the server mid-run")  # fmt: skip
    parser.add_argument("--scratch", type=Path, default=None, help="where to make the temporary folder")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (home, drop, logs) and say where"
    )
    parser.add_argument("--output", type=Path, default=REPOSITORY / "benchmarks" / "results" / "ledger-restart.json")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    arguments = parser.parse_args()
    # Before the costly part: where no server can be made, nothing else is.
    from tests.postgres_helpers import postgres_bin_dir

    if postgres_bin_dir() is None:
        print("skipped: PostgreSQL's initdb is not installed (apt install postgresql-15)", file=sys.stderr)
        raise SystemExit(SKIPPED_EXIT_CODE)
    report = new_report()
    with scratch_folder("visionflow-ledger-restart-", arguments.scratch, arguments.keep) as scratch:
        # This process's own home and Prefect settings stay in scratch, set before Prefect is imported;
        # every score run gets the benchmark's home (start_scoring), and the Prefect server's URL.
        configure_environment(scratch / "session-home")
        report["results"] = run_sides(arguments, scratch)
    write_report(report, arguments.output, arguments.json, table(report["results"]))


if __name__ == "__main__":
    main()

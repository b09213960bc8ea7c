"""Load on the team set-up: a burst of drops through the inbox of the team stack with two workers,
beside the same burst through single-process `visionflow serve`, in one invocation.

    .venv/bin/python benchmarks/team_load_benchmark.py --drops 300 --images 10 [--models-home HOME] [--json]

- team: brings up the team stack (deployments/team_stack.py: PostgreSQL, Redis, two API servers
  behind HAProxy, the services, --workers process workers, the inbox watcher) on free ports in a
  scratch folder, or uses the running stack of --stack-home. The model is HOME's champion, or the
  tiny preset trained by the stack's own `train` deployment on 120 of the source's images, as
  tests/deployments/test_team_ha.py trains. --drops drops of --images images (the source's JPEGs
  under new names, each its own content) are built under drops/staging/ and renamed into the
  inbox with _READY within a fraction of a second; the benchmark waits until each is in done/ or
  failed/. Checked: every drop done, one prediction row per file with its sha256, one ledger row
  per file and one ledger prediction per content, no content predicted twice, every flow run in
  PostgreSQL COMPLETED. Measured: seconds first in to last done, seconds per drop, score-drops
  runs (at most how many at once, drops each), peak memory of every piece. A stack it brought up
  is taken down, and it checks that no process and no port is left.
- serve: the same drops through a running `visionflow serve` with the same model
  (load_benchmark.run_inbox), so the two sit side by side on the same machine and day.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from load_benchmark import check_exactly_once, machine, run_inbox, write_images
from process_memory import ProcessMemory

from visionflow.deployments.team_stack_workers import worker_name

STACK = [sys.executable, "-m", "visionflow.deployments.team_stack"]
DRAIN_TIMEOUT_SECONDS = 3 * 3600
RUN_SECONDS = 900  # The longest training or the runs' last steps may take on two busy cores.
TRAIN_PARAMETERS = {"preset": "tiny", "ingest": {"scan": {"workers": 1}, "decode": {"workers": 1}},
                    "gate": {"min_test_accuracy": 0.0, "min_class_recall": 0.0}}  # fmt: skip
RUNS = """SELECT flow.name, flow_run.state_type::text, flow_run.start_time, flow_run.end_time, flow_run.id::text
          FROM flow_run JOIN flow ON flow.id = flow_run.flow_id WHERE flow_run.created >= %s"""  # fmt: skip
FINISHED_BY_RUN = (
    "SELECT flow_run_id, count(*) FROM task_run WHERE name LIKE 'finish-drop%%' AND created >= %s GROUP BY 1"
)
SUBMITTED_BY_WORKER = """SELECT resource->>'prefect.resource.name', count(*) FROM events
    WHERE event = 'prefect.worker.submitted-flow-run' AND occurred >= %s GROUP BY 1"""


def stack(*arguments: str) -> dict:
    """Run `team_stack ... --json` with the scheduler off (only the burst starts runs); return its summary."""
    environment = {**os.environ, "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    result = subprocess.run([*STACK, *arguments, "--json"], capture_output=True, text=True, env=environment,
                            timeout=900, check=False)  # fmt: skip
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {"error": result.stderr[-2000:]}
    return {**summary, "exit_code": result.returncode}


def query(postgres_port: int, database: str, statement: str, parameters=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=postgres_port, user="visionflow", dbname=database) as db:
        return db.execute(statement, parameters).fetchall()


def train_tiny_model(api_url: str, sources: list[Path], folder: Path) -> str:
    """Train the tiny preset through the stack's `train` deployment on 60 images of two source classes."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    classes = sorted({path.parent.name for path in sources})[:2]
    if len(classes) < 2:
        sys.exit("the source has fewer than two class folders to train on: give --models-home")
    for name in classes:
        for path in [path for path in sources if path.parent.name == name][:60]:
            (folder / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / name / path.name)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        run = run_deployment("train/train", parameters={"data": str(folder), **TRAIN_PARAMETERS}, timeout=RUN_SECONDS)
    if not (run.state and run.state.is_completed()):
        sys.exit(f"training through the stack ended {run.state!r}")
    return str(run.id)


def wait_for_drops(folders: Path, names: list[str]) -> float:
    """Poll done/ and failed/ every half second until every drop is in one; return the time of the last."""
    waiting, deadline = set(names), time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while waiting and time.monotonic() < deadline:
        waiting = {name for name in waiting if not any((folders / end / name).is_dir() for end in ("done", "failed"))}
        if waiting:
            time.sleep(0.5)
    return time.perf_counter()


def wait_for_runs(postgres_port: int, since: datetime) -> list[tuple]:
    """The runs created since `since`, once none is waiting or running (the last run ends after its last drop)."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        runs = query(postgres_port, "prefect", RUNS, (since,))
        if all(state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for _flow, state, *_ in runs):
            return runs
        time.sleep(1)
    return runs


def most_at_once(runs: list[tuple]) -> int:
    """The most runs running at one moment (the most is reached as some run starts), from start and end times."""
    spans = [(run[2], run[3]) for run in runs if run[2] and run[3]]
    return max((sum(start <= moment < end for start, end in spans) for moment, _end in spans), default=0)


def check_ledger(postgres_port: int, expected: dict[str, dict[str, str]]) -> dict:
    """One drop_files row per file, one prediction per content, in the stack's PostgreSQL ledger."""
    rows = query(postgres_port, "ledger", "SELECT drop_name, path, sha256, count(*) FROM drop_files "
                 "WHERE drop_name = ANY(%s) GROUP BY 1, 2, 3", (list(expected),))  # fmt: skip
    wanted = {(drop, path, digest) for drop, files in expected.items() for path, digest in files.items()}
    contents = sorted({digest for files in expected.values() for digest in files.values()})
    predicted = query(postgres_port, "ledger", "SELECT sha256, count(*) FROM predictions WHERE sha256 = ANY(%s) "
                      "GROUP BY 1", (contents,))  # fmt: skip
    once = {row[:3] for row in rows} == wanted and all(row[3] == 1 for row in rows)
    once = once and len(predicted) == len(contents) and all(count == 1 for _digest, count in predicted)
    return {"file_rows": sum(row[3] for row in rows), "contents_with_a_prediction": len(predicted),
            "exactly_once": once}  # fmt: skip


def run_team(arguments, sources: list[Path], scratch: Path) -> dict:
    """The burst through the team stack; returns the measures and checks, and the home with the model."""
    own = arguments.stack_home is None
    home = (scratch / "team-home") if own else arguments.stack_home.resolve()
    state = (scratch / "team-state") if own else (arguments.stack_state or home / "team").resolve()
    location, result = ["--home", str(home), "--state", str(state)], {}
    if own and arguments.models_home:
        shutil.copytree(arguments.models_home / "models", home / "models")
    if not own and not (home / "models" / "champion.json").exists():
        sys.exit(f"the stack's home {home} has no champion to score with: train one first")
    since = datetime.now(UTC)
    try:
        if own:
            up = stack("up", *location, "--base-port", str(arguments.base_port or free_base_port()), "--workers",
                       str(arguments.workers), "--allow-root", str(scratch / "training"),
                       "--deploy-option=--score-every=3600")  # fmt: skip
            if up["exit_code"]:
                sys.exit(f"team stack up failed: {up.get('error')}; logs in {state / 'logs'}")
            result["up_seconds"] = up["seconds"]
        status = stack("status", *location)
        if status["exit_code"]:
            sys.exit(f"the team stack in {state} is not fully up: {status.get('pieces', status.get('error'))}")
        api_url, config = status["api_url"], json.loads((state / "config.json").read_text())
        postgres_port = config["base_port"] + 4  # The balancer's port, then two API servers, Redis, PostgreSQL.
        if not (home / "models" / "champion.json").exists():
            result["train_run"] = train_tiny_model(api_url, sources, scratch / "training")
        processes = json.loads((state / "processes.json").read_text())["processes"]
        workers = [worker_name(name) for name in processes if name.startswith("worker")]
        memory = {name: ProcessMemory(record["pid"], interval=1.0) for name, record in processes.items()}
        for sampler in memory.values():
            sampler.start()
        folders, stamp = home / "drops", datetime.now(UTC).strftime("%H%M%S")
        expected = {}
        for number in range(arguments.drops):
            name = f"team-{stamp}-{number:05d}"
            expected[name] = write_images(sources, folders / "staging" / name, arguments.images_per_drop,
                                          number * arguments.images_per_drop)  # fmt: skip
            (folders / "staging" / name / "_READY").write_text("")
        burst = datetime.now(UTC)
        started = time.perf_counter()
        for name in expected:
            os.rename(folders / "staging" / name, folders / "inbox" / name)
        arrived = time.perf_counter() - started
        drained = wait_for_drops(folders, list(expected)) - started
        runs = wait_for_runs(postgres_port, since)
        for sampler in memory.values():
            sampler.stop()
        scoring = [run for run in runs if run[0] == "score-drops"]
        finished = drops_finished_per_run(postgres_port, burst, arguments.drops)
        result.update({
            "workers": len(workers),
            "drops": arguments.drops, "images": arguments.drops * arguments.images_per_drop,
            "seconds_to_arrive": round(arrived, 2), "seconds_to_drain": round(drained, 1),
            "seconds_per_drop": round(drained / arguments.drops, 3),
            "images_per_second": round(arguments.drops * arguments.images_per_drop / drained, 1),
            "failed_drops": sorted(name for name in expected if (folders / "failed" / name).is_dir()),
            "flow_runs": {f"{flow} {kind}": sum(run[:2] == (flow, kind) for run in runs) for flow, kind, *_ in runs},
            "score_drops_runs": len(scoring), "most_score_drops_runs_at_once": most_at_once(scoring),
            "drops_finished_per_run": finished,
            "runs_per_worker": runs_per_worker(postgres_port, burst, workers),
            "all_runs_completed": all(kind == "COMPLETED" for _flow, kind, *_ in runs),
            "peak_memory_mib": {name: piece_memory(sampler.peaks()) for name, sampler in memory.items()},
            "check": check_exactly_once(home, expected), "ledger": check_ledger(postgres_port, expected),
        })  # fmt: skip
    finally:
        if own:
            down = stack("down", *location)
            result["down"] = {"ok": down.get("ok", False), "left_running": down.get("left_running"),
                              "ports_taken": down.get("ports_taken"), "seconds": down.get("seconds")}  # fmt: skip
    return {**result, "home": str(home)}


def piece_memory(roles: dict[str, dict]) -> dict:
    """A piece's processes over the run, any role: a worker's flow runs, PostgreSQL's backend per connection.
    Peaks of processes that never ran together add up to more than the piece held: the sum is a bound."""
    return {"processes": sum(role["processes"] for role in roles.values()),
            "largest_peak_mib": max((role["largest_peak_mib"] for role in roles.values()), default=0.0),
            "sum_of_peaks_mib": round(sum(role["sum_of_peaks_mib"] for role in roles.values()), 1)}  # fmt: skip


def runs_per_worker(postgres_port: int, burst: datetime, workers: list[str]) -> dict[str, int]:
    """How many flow runs each worker started since the burst, from its submitted-flow-run events."""
    counts = dict(query(postgres_port, "prefect", SUBMITTED_BY_WORKER, (burst,)))
    return {name: counts.get(name, 0) for name in workers}


def drops_finished_per_run(postgres_port: int, burst: datetime, drops: int) -> list[int]:
    """How many drops each run moved on (its finish-drop task runs), most first. Task runs reach
    PostgreSQL through events and the services' recorder, seconds after the run: wait up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        counts = query(postgres_port, "prefect", FINISHED_BY_RUN, (burst,))
        if sum(count for _run, count in counts) >= drops or time.monotonic() > deadline:
            return sorted((count for _run, count in counts), reverse=True)
        time.sleep(1)


def free_base_port() -> int:
    """A base port whose next four ports are free too (the stack takes five), below the ephemeral ports."""
    from visionflow.deployments.team_stack_processes import port_in_use

    for _ in range(100):
        base = random.randrange(20000, 32000, 10)
        if not any(port_in_use(port) for port in range(base, base + 5)):
            return base
    sys.exit("no five free ports in a row on 127.0.0.1: give --base-port")


def summary_lines(results: dict) -> list[str]:
    team, serve = results["team"], results.get("serve")
    once = team["check"]["exactly_once"] and team["ledger"]["exactly_once"]
    lines = [f"team stack, {team['workers']} workers: {team['drops']} drops of {results['images_per_drop']} images "
             f"drained in {team['seconds_to_drain']} s, {team['seconds_per_drop']} s per drop; "
             f"{team['score_drops_runs']} score-drops runs ({team['most_score_drops_runs_at_once']} at once at most, "
             f"drops each {team['drops_finished_per_run']}); exactly once: {once}; "
             f"every run COMPLETED: {team['all_runs_completed']}"]  # fmt: skip
    largest = {name: piece["largest_peak_mib"] for name, piece in team["peak_memory_mib"].items()}
    lines.append(f"team stack: score-drops runs by worker {team['runs_per_worker']}; largest peak MiB of a process, "
                 f"by piece: {largest}")  # fmt: skip
    if "down" in team:
        lines.append(f"team stack down: {'nothing left' if team['down']['ok'] else team['down']}")
    if serve:
        lines.append(f"visionflow serve: drained in {serve['seconds_to_drain']} s, {serve['seconds_per_drop']} s per "
                     f"drop; runs {serve['flow_runs']}; exactly once: {serve['check']['exactly_once']}")  # fmt: skip
        largest = {role: entry["largest_peak_mib"] for role, entry in serve["peak_memory_mib"].items()}
        lines.append(f"visionflow serve: largest peak MiB of a process, by role: {largest}")
        lines.append(f"seconds per drop, team / serve: {team['seconds_per_drop'] / serve['seconds_per_drop']:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drops", type=int, default=300, help="drops put into the inbox at once")
    parser.add_argument("--images", dest="images_per_drop", type=int, default=10, help="images in each drop")
    parser.add_argument("--workers", type=int, default=2, help="process workers on the stack's pool")
    parser.add_argument("--source", type=Path, default=Path("../shared/datasets/cifar10/test"),
                        help="JPEGs to copy (any nesting; class folders train the tiny model)")  # fmt: skip
    parser.add_argument("--models-home", type=Path, help="a VISIONFLOW_HOME whose champion both sides use")
    parser.add_argument("--stack-home", type=Path, help="use the running team stack of this home; it stays up")
    parser.add_argument("--stack-state", type=Path, help="that stack's state folder (default: its HOME/team)")
    parser.add_argument("--base-port", type=int, help="the stack's base port (default: five free ones)")
    parser.add_argument("--no-serve", action="store_true", help="skip the `visionflow serve` side")
    parser.add_argument("--scratch", type=Path, default=None, help="where to build homes and drops (deleted after)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/team-load.json"))
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line, last on stdout")
    arguments = parser.parse_args()
    sources = sorted(arguments.source.rglob("*.jpg"))
    if not sources:
        sys.exit(f"no .jpg files under {arguments.source}: point --source at an image folder")
    # Under /tmp with a+x: as root, user postgres must reach the stack's data folder.
    scratch = Path(tempfile.mkdtemp(prefix="visionflow-team-load-", dir=arguments.scratch))
    os.chmod(scratch, 0o755)
    results: dict = {"machine": machine(), "command": " ".join(sys.argv), "date": datetime.now(UTC).date().isoformat(),
                     "images_per_drop": arguments.images_per_drop}  # fmt: skip
    try:
        results["team"] = run_team(arguments, sources, scratch)
        if not arguments.no_serve:
            side = argparse.Namespace(models_home=Path(results["team"]["home"]), drops=arguments.drops,
                                      images_per_drop=arguments.images_per_drop)  # fmt: skip
            results["serve"] = run_inbox(side, sources, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results) if arguments.json else "\n".join(summary_lines(results)))


if __name__ == "__main__":
    main()

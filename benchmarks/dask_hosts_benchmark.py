"""Dask hosts benchmark: what losing a worker host costs a `visionflow score` run on a three-host Dask cluster.

    .venv/bin/python benchmarks/dask_hosts_benchmark.py --repeats 1 [--json]     # as root, about 3 minutes

The hosts are Linux network namespaces, made by the helpers that tests/flows/test_score_dask_hosts.py
uses (tests/network_host_helpers.py, tests/dask_host_helpers.py): a Prefect server, the Dask
scheduler and the score command on "flow", one single-threaded `dask worker` on each of
"worker-b" and "worker-c". Every side scores the test's drop (20,000 12x12 PNGs, 200 of them
copies, and 4 broken files) with the test's tiny model (128x128x3 input, 15 shards) through the real
`visionflow score DROP --dask-address SCHEDULER --json`, on a cluster of its own, in a fresh home:

- none: nothing is lost, the baseline.
- link-down: once a shard has finished and worker B holds two, worker B's link goes down (its
  packets vanish, nobody is told), with Dask's default TCP timeout (30 s).
- link-down-tcp-15s: the same, with DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP=15s on every process,
  as docs/SCALING.md asks of a team's cluster.
- worker-killed: at the same moment, worker B's worker process is SIGKILLed (its nanny stays).
- none-tcp-15s: nothing is lost, with the 15 s timeout: what the setting costs when all is well.

The sides take turns (in reverse order on odd repeats), so their differences hold on a noisy
machine. Measured per run: its exit code, seconds from start to the fault, seconds from the fault
to the warning naming the lost worker and the shards it held, the command's wall seconds, its
own scoring seconds, and its counts (files, scored, rejected, contents predicted), checked
against the first "none" run. Prints a markdown table, or with --json one JSON object; both are
written to --output. The scratch folder is temporary and removed at the end, unless --keep.
Every namespace, link and process a side starts is gone when it ends, or the run fails naming
what is left. Where `ip netns add` is refused (not root, no CAP_NET_ADMIN, no iproute2), it says
so in one line and exits with code 4.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # The helpers live in the tests package at the repository's root.
from load_benchmark import new_report, scratch_folder, write_report  # noqa: E402

from visionflow.home import configure_environment  # noqa: E402

from tests.network_host_helpers import netns_refusal  # noqa: E402

TCP_TIMEOUT = "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP"
TEAM_SETTINGS = {TCP_TIMEOUT: "15s"}  # docs/SCALING.md's setting for a team's scheduler and workers.
SIDES = {  # Side name: (what is lost, the Dask settings of every process on the hosts).
    "none": ("none", {}),
    "link-down": ("link-down", {}),
    "link-down-tcp-15s": ("link-down", TEAM_SETTINGS),
    "worker-killed": ("worker-killed", {}),
    "none-tcp-15s": ("none", TEAM_SETTINGS),
}
LOST = "worker-b"  # The host lost mid-run; worker-c carries on.
RUN_SECONDS = 600  # The longest one score run may take; the test measured 25-58 s on two cores.
COUNTS = ("files", "scored", "rejected", "contents_predicted")
SKIPPED_EXIT_CODE = 4  # As visionflow's own BadInputError: the machine cannot run this, and says why.


def run_side(scratch: Path, scene: dict, side: str, repeat: int) -> dict:
    """One score run on a fresh three-host cluster, losing worker B mid-run as the side says."""
    from tests.dask_host_helpers import dask_hosts, fresh_home, warning_after

    fault, settings = SIDES[side]
    run_folder = scratch / f"{side}-{repeat}"
    home = fresh_home(run_folder / "home", scene["registry"])
    log = run_folder / "score.log"
    fault_time = fault_after = None
    with dask_hosts(run_folder / "cluster", settings) as cluster:
        lost_worker, lost_pid = cluster.workers[LOST], cluster.worker_pid(LOST)
        started = time.monotonic()
        run = cluster.score(scene["drop"], home, log)
        if fault != "none":
            cluster.wait_until_holding(LOST, run)
            fault_time, fault_after = time.time(), time.monotonic() - started
            if fault == "link-down":
                cluster.network.link_down(cluster.network.host(LOST))
            else:
                os.kill(lost_pid, signal.SIGKILL)
        try:
            code = run.wait(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            code = None  # Still running: closing the cluster kills it.
        seconds = time.monotonic() - started
    output = log.read_text(errors="replace")
    summary = next((json.loads(line) for line in reversed(output.splitlines()) if line.startswith('{"drop"')), {})
    result = {"side": side, "fault": fault, "dask_settings": settings, "repeat": repeat, "exit_code": code,
              "run_seconds": round(seconds, 1), "scoring_seconds": summary.get("scoring_seconds"),
              "fault_after_seconds": None if fault_after is None else round(fault_after, 1),
              "warned_after_seconds": None, "shards_held": None,
              "counts": {name: summary.get(name) for name in COUNTS}}  # fmt: skip
    if fault_time is not None:
        try:
            held, warned = warning_after(output, lost_worker, fault_time)
            result.update(shards_held=held, warned_after_seconds=round(warned, 1))
        except AssertionError:
            pass  # No warning named the lost worker: left as None, and the table shows it.
    result["warnings"] = [line for line in output.splitlines() if "Dask worker" in line]
    if code != 0:
        result["log_tail"] = output[-3000:]
    return result


def build_scene(scratch: Path) -> dict:
    """The test's drop and a registry holding its tiny model, built once for every side."""
    from tests.dask_host_helpers import MODEL_SHAPE, build_drop
    from tests.scoring_helpers import register_tiny_model

    register_tiny_model(scratch / "registry" / "models", shape=MODEL_SHAPE)
    contents = build_drop(scratch / "drop")
    return {"drop": scratch / "drop", "registry": scratch / "registry", "contents": contents}


def check_counts(results: list[dict], scene: dict) -> None:
    """Mark each run that ended well with every file counted and every content predicted once, and
    with the first clean run's counts where there is one."""
    from tests.dask_host_helpers import FILES

    baseline = next((result["counts"] for result in results if result["side"] == "none"), None)
    for result in results:
        counts = result["counts"]
        result["counts_as_expected"] = (
            result["exit_code"] == 0 and counts == (baseline or counts) and counts["files"] == FILES
            and counts["contents_predicted"] == scene["contents"]
        )  # fmt: skip


def table(results: list[dict]) -> str:
    lines = ["| side | repeat | exit | fault at s | warned after s | shards held | run s | scoring s | counts ok |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for result in results:
        cells = [result["side"], result["repeat"], result["exit_code"], result["fault_after_seconds"],
                 result["warned_after_seconds"], result["shards_held"], result["run_seconds"],
                 result["scoring_seconds"], result["counts_as_expected"]]  # fmt: skip
        lines.append("| " + " | ".join("-" if cell is None else str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def run_sides(arguments, scratch: Path) -> list[dict]:
    scene = build_scene(scratch)
    results = []
    for repeat in range(arguments.repeats):
        for side in arguments.sides if repeat % 2 == 0 else list(reversed(arguments.sides)):
            results.append(run_side(scratch, scene, side, repeat))
            progress = {name: value for name, value in results[-1].items() if name not in ("warnings", "log_tail")}
            print(json.dumps(progress), file=sys.stderr, flush=True)
    check_counts(results, scene)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side, the sides taking turns")
    parser.add_argument("--sides", nargs="+", choices=list(SIDES), default=list(SIDES), help="which sides to run")
    parser.add_argument("--scratch", type=Path, default=None, help="where to make the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (homes, logs) and say where")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/dask-hosts.json"))
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    arguments = parser.parse_args()
    refusal = netns_refusal()  # Before the costly part: where the hosts cannot be made, nothing else is.
    if refusal is not None:
        print(f"skipped: {refusal}; the hosts are network namespaces (run as root, with iproute2)", file=sys.stderr)
        raise SystemExit(SKIPPED_EXIT_CODE)
    # The default sides mean Dask's own default: a timeout set in this shell would reach every host.
    os.environ.pop(TCP_TIMEOUT, None)
    report = new_report()
    with scratch_folder("visionflow-dask-hosts-", arguments.scratch, arguments.keep) as scratch:
        # This process's own home and Prefect settings stay in scratch; the hosts get neither
        # (PRIVATE in tests/dask_host_helpers.py), so each process there keeps its own.
        configure_environment(scratch / "session-home")
        report["results"] = run_sides(arguments, scratch)
    write_report(report, arguments.output, arguments.json, table(report["results"]))


if __name__ == "__main__":
    main()

"""Dask benchmark: scoring and ingest on the default path, on a 1-worker and on a 2-worker local Dask cluster.

Each side is the real command (`visionflow score DROP --json`, `visionflow ingest --data DATA --json`,
with `--dask-workers N` or not) in a fresh VISIONFLOW_HOME, so nothing was scored or decoded
before. The sides alternate within one run, so their ratios hold on a noisy machine. Peak memory
is each process's VmHWM, sampled from /proc, by role (the command's process, its workers).

A last part measures the cost of one shard on the cluster: an empty shard function mapped over
many shards, so the time per shard is Prefect's task run plus Dask's scheduling and nothing else.

    .venv/bin/python benchmarks/dask_benchmark.py --models-home HOME --model v0002 \\
        --drop ../shared/datasets/cifar10/train --ingest-data ../shared/datasets/cifar10

HOME is a VISIONFLOW_HOME holding a model trained on CIFAR-10. Prints a markdown table and, last,
a JSON object, which is also written to --output. --engine is passed to every score command
(without it, the command's own default, auto); --sides, --repeats (the sides alternating),
--no-running-cluster and --overhead-shards 0 narrow a run to the parts wanted, e.g.

    .venv/bin/python benchmarks/dask_benchmark.py --models-home HOME --model v0001 --engine auto \\
        --drop ../shared/datasets/cifar10/train --sides default dask-2 --repeats 2 --no-running-cluster \\
        --overhead-shards 0 --output benchmarks/results/dask-engine-auto.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_benchmark import machine  # noqa: E402
from process_memory import ProcessMemory  # noqa: E402
from score_benchmark import scratch_home  # noqa: E402

VISIONFLOW = [sys.executable, "-m", "visionflow"]
SIDES = {"default": [], "dask-1": ["--dask-workers", "1"], "dask-2": ["--dask-workers", "2"]}
RUNNING = "dask-2-running"  # A 2-worker cluster started once, before the timed run, as a team keeps one.


def run_command(arguments: list[str], home: Path) -> dict:
    """One visionflow command in its own home: wall seconds, its JSON summary, peak memory by role."""
    environment = {**os.environ, "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    process = subprocess.Popen([*VISIONFLOW, *arguments, "--json"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    memory = ProcessMemory(process.pid)
    memory.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed with exit code {process.returncode}: {output[-2000:]}")
    return {"seconds": round(seconds, 1), "summary": json.loads(output.strip().splitlines()[-1]),
            "peak_memory_mib": memory.peaks()}  # fmt: skip


def score_side(arguments, scratch: Path, side: str, options: list[str] | None = None, repeat: int = 0) -> dict:
    home = scratch_home(arguments.models_home, arguments.model, scratch / f"score-{side}-{repeat}")
    engine = ["--engine", arguments.engine] if arguments.engine else []
    result = run_command(["score", str(arguments.drop.resolve()), *(options or SIDES[side]), *engine], home)
    summary = result["summary"]
    return {"side": side, "part": "score", "engine": summary.get("engine"), "repeat": repeat,
            "seconds": result["seconds"], "images": summary["scored"],
            "scoring_seconds": summary["scoring_seconds"],
            "scoring_images_per_second": summary["scoring_images_per_second"],
            "peak_memory_mib": result["peak_memory_mib"]}  # fmt: skip


def ingest_side(arguments, scratch: Path, side: str, options: list[str] | None = None, repeat: int = 0) -> dict:
    home = scratch / f"ingest-{side}-{repeat}"
    result = run_command(["ingest", "--data", str(arguments.ingest_data.resolve()), *(options or SIDES[side])], home)
    summary = result["summary"]
    images = sum(summary["splits"].values())
    return {"side": side, "part": "ingest", "repeat": repeat, "seconds": result["seconds"], "images": images,
            "flow_seconds": summary["seconds"], "images_per_second": round(images / summary["seconds"], 1),
            "fingerprint": summary["dataset_fingerprint"], "peak_memory_mib": result["peak_memory_mib"]}  # fmt: skip


def running_cluster_sides(arguments, scratch: Path) -> list[dict]:
    """Score and ingest on a 2-worker cluster that is already running and has served one run before
    (its workers have imported Prefect and TensorFlow and loaded the model): the steady state."""
    from distributed import LocalCluster

    from visionflow.processes.dask_shards import local_cluster_settings

    results = []
    with LocalCluster(**local_cluster_settings(2)) as cluster:
        options = ["--dask-address", cluster.scheduler_address]
        score_side(arguments, scratch, "warm-up", options)  # Not timed: loads the model on the workers.
        results.append(score_side(arguments, scratch, RUNNING, options))
        if arguments.ingest_data:
            results.append(ingest_side(arguments, scratch, RUNNING, options))
        worker_peaks = _worker_peaks(cluster)
    for result in results:
        result["cluster_worker_peak_mib"] = worker_peaks
    return results


def _worker_peaks(cluster) -> list[float]:
    """Each running worker's peak resident memory (VmHWM) in MiB, over both runs."""
    from distributed import Client

    def peak() -> float:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
        return round(int(line.split()[1]) / 1024, 1)

    with Client(cluster) as client:
        return sorted(client.run(peak).values())


def shard_overhead(workers: int, shards: int) -> dict:
    """Seconds per empty shard on a local cluster of `workers` processes (after its start-up)."""
    code = f"""
import json, time
from prefect import flow
from visionflow.processes.dask_shards import DaskConfig, map_shards

def empty(chunk):
    return chunk

@flow
def overhead():
    config = DaskConfig(workers={workers})
    list(map_shards("warm-up", empty, list(range({workers} * 2)), (), config))
    started = time.perf_counter()
    list(map_shards("empty", empty, list(range({shards})), (), config))
    return time.perf_counter() - started

if __name__ == "__main__":
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):  # A server the workers report to as well.
        print(json.dumps(overhead()))
"""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "overhead.py"
        script.write_text(code)
        environment = {**os.environ, "PREFECT_HOME": folder}
        environment.pop("PREFECT_API_URL", None)
        output = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment,
                                check=True, cwd=folder).stdout  # fmt: skip
    seconds = json.loads(output.strip().splitlines()[-1])
    return {"workers": workers, "shards": shards, "seconds": round(seconds, 2),
            "seconds_per_shard": round(seconds / shards, 3),
            "worker_seconds_per_shard": round(seconds * workers / shards, 3)}  # fmt: skip


def table(results: list[dict]) -> str:
    lines = ["| part | side | images | command s | stage images/s | largest process peak MiB | worker peaks MiB |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for result in results:
        peaks = result["peak_memory_mib"]
        workers = peaks.get("worker", {})
        largest = max((entry["largest_peak_mib"] for role, entry in peaks.items() if role != "worker"), default=0)
        rate = result.get("scoring_images_per_second") or result.get("images_per_second")
        worker_text = f"{workers.get('processes', 0)} x up to {workers.get('largest_peak_mib', 0)}"
        if result.get("cluster_worker_peak_mib"):
            worker_text = f"cluster's: {result['cluster_worker_peak_mib']}"
        lines.append(f"| {result['part']} | {result['side']} | {result['images']:,} | {result['seconds']} | "
                     f"{rate} | {largest} | {worker_text} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-home", type=Path, required=True, help="a VISIONFLOW_HOME with a CIFAR-10 model")
    parser.add_argument("--model", default="v0001", help="the registered version to score with")
    parser.add_argument("--drop", type=Path, required=True, help="the folder to score (50,000 CIFAR-10 JPEGs)")
    parser.add_argument("--ingest-data", type=Path, default=None, help="a labelled folder to ingest (CIFAR-10)")
    parser.add_argument("--overhead-shards", type=int, default=64, help="empty shards timed per cluster size")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/dask.json"))
    parser.add_argument("--engine", default=None, help="`visionflow score --engine` (default: the command's own)")
    parser.add_argument("--sides", nargs="+", choices=list(SIDES), default=list(SIDES), help="which sides to run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side, alternating their order")
    parser.add_argument("--no-running-cluster", action="store_true", help="skip the already running cluster's part")
    arguments = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="visionflow-dask-benchmark-") as scratch:
        for repeat in range(arguments.repeats):
            for side in arguments.sides if repeat % 2 == 0 else list(reversed(arguments.sides)):
                results.append(score_side(arguments, Path(scratch), side, repeat=repeat))
                print(json.dumps(results[-1]), file=sys.stderr)
        if arguments.ingest_data:
            for repeat in range(arguments.repeats):
                for side in arguments.sides if repeat % 2 == 0 else list(reversed(arguments.sides)):
                    results.append(ingest_side(arguments, Path(scratch), side, repeat=repeat))
                    print(json.dumps(results[-1]), file=sys.stderr)
        if not arguments.no_running_cluster:
            results.extend(running_cluster_sides(arguments, Path(scratch)))
            print(json.dumps(results[-2:]), file=sys.stderr)
    overhead = [shard_overhead(workers, arguments.overhead_shards) for workers in (1, 2) if arguments.overhead_shards]
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
              "results": results, "shard_overhead": overhead}  # fmt: skip
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(report, indent=2))
    print(table(results))
    for entry in overhead:
        print(f"empty shards on {entry['workers']} worker(s): {entry['seconds_per_shard']} s per shard")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

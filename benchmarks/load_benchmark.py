"""Load: a thousand small drops through a running `visionflow serve`, and one very large drop.

    .venv/bin/python benchmarks/load_benchmark.py --models-home HOME --source ../shared/datasets/cifar10

- inbox: --drops drops of --images-per-drop images are put into the inbox of a running
  `visionflow serve` at once (each built under a hidden name, then renamed in with _READY).
  Beside it, in the same run, the same images as one drop through `visionflow score`: the
  difference is what the service pays per drop. Measured: time to drain (first drop in to last
  drop in done/), images/s, seconds per drop, flow runs started, peak memory of every process.
- large: one drop of --large-images images through `visionflow score`, beside one a tenth its
  size, to show memory does not grow with the drop: images/s and peak memory of every process.

Images are the source's JPEGs under new names, each with its own trailing bytes (ignored by
decoders), so every file is a new content the model must predict. Every output is checked:
each file has exactly one row with its own sha256, and no content was predicted twice.
HOME must hold a registry with a champion (models/); every run gets a fresh home beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from process_memory import ProcessMemory

VISIONFLOW = [sys.executable, "-m", "visionflow"]
DRAIN_TIMEOUT_SECONDS = 3 * 3600


def write_images(sources: list[Path], folder: Path, count: int, start: int) -> dict[str, str]:
    """count images in folder, as 00000.jpg...; return {name: sha256}. Content start+i is unique."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for offset in range(count):
        index = start + offset
        data = sources[index % len(sources)].read_bytes() + f"visionflow-load-{index:09d}".encode()
        name = f"{offset:06d}.jpg"
        (folder / name).write_bytes(data)
        written[name] = hashlib.sha256(data).hexdigest()
    return written


def fresh_home(models_home: Path, scratch: Path, name: str) -> Path:
    home = scratch / name
    shutil.copytree(models_home / "models", home / "models")
    return home


def check_exactly_once(home: Path, expected: dict[str, dict[str, str]]) -> dict:
    """Every expected file has one prediction row with its sha256; no content predicted twice."""
    import pyarrow.dataset as ds

    problems, rows, predicted = [], 0, 0
    for drop, files in expected.items():
        folder = home / "predictions" / drop
        parts = [str(path) for path in (folder / "predictions").glob("part-*.parquet")]
        table = ds.dataset(parts).to_table(columns=["path", "sha256"]) if parts else None
        found = list(zip(table["path"].to_pylist(), table["sha256"].to_pylist(), strict=True)) if table else []
        rows += len(found)
        if sorted(found) != sorted(files.items()):
            problems.append(f"{drop}: {len(found)} rows for {len(files)} files, or a row with the wrong content")
        for report in (folder / "reports").glob("scoring-*.json"):
            predicted += json.loads(report.read_text())["counts"]["contents_predicted"]
    contents = len({digest for files in expected.values() for digest in files.values()})
    if predicted != contents:
        problems.append(f"{predicted} predictions made for {contents} distinct contents")
    return {"files": sum(map(len, expected.values())), "rows": rows, "contents_predicted": predicted,
            "problems": problems, "exactly_once": not problems}  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flow_run_counts(api_url: str) -> dict[str, int]:
    """Flow runs on the server, by flow name and state ("score-drops COMPLETED")."""
    from prefect.client.orchestration import PrefectClient

    async def read() -> dict[str, int]:
        async with PrefectClient(api_url) as client:
            flows = {flow.id: flow.name for flow in await client.read_flows()}
            runs, page = [], None
            while page is None or len(page) == 200:  # The API returns at most 200 runs a call.
                page = await client.read_flow_runs(limit=200, offset=len(runs))
                runs += page
        counts: dict[str, int] = {}
        for run in runs:
            key = f"{flows[run.flow_id]} {run.state_type.value if run.state_type else 'NO STATE'}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    return asyncio.run(read())


def run_inbox(arguments, sources: list[Path], scratch: Path) -> dict:
    home = fresh_home(arguments.models_home, scratch, "serve-home")
    environment = {**os.environ, "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_API_URL", None)
    command = [*VISIONFLOW, "serve", "--port", str(free_port()), "--settle-seconds", "2", "--score-every", "3600",
               "--json"]  # fmt: skip
    serve = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    memory = ProcessMemory(serve.pid)
    memory.start()
    try:
        ready = json.loads(next(line for line in serve.stdout if line.lstrip().startswith("{")))
        inbox, done = home / "drops" / "inbox", home / "drops" / "done"
        staging = home / "drops" / "staging"
        expected = {}
        for number in range(arguments.drops):
            name = f"drop-{number:05d}"
            expected[name] = write_images(sources, staging / name, arguments.images_per_drop,
                                          number * arguments.images_per_drop)  # fmt: skip
            (staging / name / "_READY").write_text("")
        started = time.perf_counter()
        for name in expected:  # The whole burst arrives within a second or two.
            os.rename(staging / name, inbox / name)
        arrived = time.perf_counter() - started
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while sum(1 for _ in done.iterdir()) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.5)
        drained = time.perf_counter() - started
        failed = sorted(path.name for path in (home / "drops" / "failed").iterdir())
        runs = flow_run_counts(ready["api_url"])
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=120)
        memory.stop()
    images = arguments.drops * arguments.images_per_drop
    return {"drops": arguments.drops, "images": images, "seconds_to_arrive": round(arrived, 2),
            "seconds_to_drain": round(drained, 1), "images_per_second": round(images / drained, 1),
            "seconds_per_drop": round(drained / arguments.drops, 3), "failed_drops": failed,
            "flow_runs": runs, "peak_memory_mib": memory.peaks(),
            "check": check_exactly_once(home, expected)}  # fmt: skip


def run_score(arguments, sources: list[Path], scratch: Path, name: str, images: int, start: int) -> dict:
    """One drop of `images` images through `visionflow score`, timed, with peak memory per process."""
    home = fresh_home(arguments.models_home, scratch, f"{name}-home")
    drop = scratch / name
    expected = {name: write_images(sources, drop, images, start)}
    environment = {**os.environ, "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    process = subprocess.Popen([*VISIONFLOW, "score", str(drop), "--json"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    memory = ProcessMemory(process.pid)
    memory.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    memory.stop()
    summary = json.loads(output.strip().splitlines()[-1])
    shutil.rmtree(drop)
    return {"images": images, "seconds": round(seconds, 1), "images_per_second": round(images / seconds, 1),
            "scoring_images_per_second": summary.get("scoring_images_per_second"), "exit_code": process.returncode,
            "peak_memory_mib": memory.peaks(), "check": check_exactly_once(home, expected)}  # fmt: skip


def machine() -> dict:
    """The machine a figure was measured on: its CPU, cores, the flags that matter, and the kind training
    sizes its recipes for (visionflow/network/hardware.py), oneDNN's instruction cap included."""
    from visionflow.network.hardware import machine_kind, read_machine_facts

    facts = read_machine_facts()
    return {**facts.model_dump(exclude={"gpus"}), "gpus": len(facts.gpus), "kind": machine_kind(facts)}


def new_report() -> dict:
    """The start of a benchmark's report: the machine, the date (UTC) and the command that ran."""
    from datetime import UTC, datetime

    return {"machine": machine(), "date": datetime.now(UTC).date().isoformat(), "command": " ".join(sys.argv)}


@contextlib.contextmanager
def scratch_folder(prefix: str, parent: Path | None = None, keep: bool = False) -> Iterator[Path]:
    """A temporary folder for a benchmark's homes, drops and logs, removed at the end unless keep."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write_report(report: dict, output: Path, as_json: bool, table: str) -> None:
    """Write a benchmark's report to output as JSON and print it: one JSON object, or the table."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report) if as_json else table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-home", type=Path, required=True, help="a VISIONFLOW_HOME with a champion model")
    parser.add_argument("--source", type=Path, required=True, help="a folder of JPEGs to copy (any nesting)")
    parser.add_argument("--drops", type=int, default=1000, help="drops put into the inbox at once")
    parser.add_argument("--images-per-drop", type=int, default=10, help="images in each of those drops")
    parser.add_argument("--large-images", type=int, default=200_000, help="images in the one large drop")
    parser.add_argument("--parts", default="inbox,large", help="which parts to run: inbox, large or both")
    parser.add_argument("--scratch", type=Path, default=None, help="where to build homes and drops (deleted after)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/load.json"))
    arguments = parser.parse_args()
    sources = sorted(arguments.source.rglob("*.jpg"))
    if not sources:
        sys.exit(f"no .jpg files under {arguments.source}: point --source at an image folder")
    scratch = Path(tempfile.mkdtemp(prefix="visionflow-load-", dir=arguments.scratch))
    results: dict = {"machine": machine(), "command": " ".join(sys.argv)}
    try:
        parts = set(arguments.parts.split(","))
        if "inbox" in parts:
            results["inbox"] = run_inbox(arguments, sources, scratch)
            images = arguments.drops * arguments.images_per_drop
            results["inbox_baseline_one_drop"] = run_score(arguments, sources, scratch, "one-drop", images, 0)
        if "large" in parts:
            tenth = arguments.large_images // 10
            results["large_tenth"] = run_score(arguments, sources, scratch, "tenth", tenth, 10_000_000)
            results["large"] = run_score(arguments, sources, scratch, "large", arguments.large_images, 20_000_000)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Ingest benchmark: visionflow's ingest flow against a plain Pillow + pandas.to_parquet loop.

Both sides turn the same image folder into one Parquet file per split with the same pixels,
in the same run, alternating, so the ratio is fair on a shared, noisy machine. visionflow's
side also scans, hashes, validates two data contracts, writes the manifest and reports.

    .venv/bin/python benchmarks/ingest_benchmark.py --data ../shared/datasets/cifar10 --repeats 2

Prints a JSON object (last line) and a markdown table for docs/BENCHMARKS.md. The Prefect
server is started, and Great Expectations imported, once before timing, as in a long-running
`visionflow serve` process; that start-up is reported separately. Each visionflow repetition
uses a fresh VISIONFLOW_HOME, so nothing is cached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from PIL import Image

if TYPE_CHECKING:
    from visionflow.flows.ingest import IngestSummary


def plain_loop(data: Path, output: Path, image_size: int) -> int:
    """The baseline: one process, Pillow decode and resize, pandas.to_parquet per split."""
    output.mkdir(parents=True, exist_ok=True)
    splits = sorted(path.name for path in data.iterdir() if path.is_dir())
    count = 0
    for split in splits:
        classes = sorted(path.name for path in (data / split).iterdir() if path.is_dir())
        rows = []
        for label, class_name in enumerate(classes):
            for path in sorted((data / split / class_name).iterdir()):
                image = Image.open(path).convert("RGB")
                if image.size != (image_size, image_size):
                    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
                rows.append({"pixels": image.tobytes(), "label": label, "path": str(path.relative_to(data))})
        pd.DataFrame(rows).to_parquet(output / f"{split}.parquet", index=False)
        count += len(rows)
    return count


def visionflow_ingest(data: Path, home: Path, image_size: int) -> IngestSummary:
    """visionflow's ingest flow, called as a flow run against the already running server."""
    from visionflow.flows.ingest import IngestConfig, ingest_flow

    config = IngestConfig.model_validate({"decode": {"image_size": image_size}})
    return ingest_flow(data=str(data), config=config, home=str(home))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    arguments = parser.parse_args()
    if not arguments.data.is_dir():
        sys.exit(f"benchmark data {arguments.data} not found")

    scratch = Path(tempfile.mkdtemp(prefix="visionflow-bench-"))
    from visionflow.home import configure_environment

    configure_environment(scratch / "home-warmup")
    import logging

    logging.getLogger("prefect").setLevel(logging.WARNING)
    started = time.perf_counter()
    from prefect import flow

    @flow(name="benchmark-warm-up")
    def warm_up() -> None:
        """Starts Prefect's server so that flow timings do not include it."""

    warm_up()
    import great_expectations  # noqa: F401  (a long-running service has it imported already)

    server_start_seconds = time.perf_counter() - started

    plain_times, flow_times, flow_internal = [], [], []
    for repeat in range(arguments.repeats):
        home = scratch / f"home-{repeat}"
        started = time.perf_counter()
        summary = visionflow_ingest(arguments.data, home, arguments.image_size)
        flow_times.append(time.perf_counter() - started)
        flow_internal.append(summary.seconds)
        shutil.rmtree(home, ignore_errors=True)

        started = time.perf_counter()
        rows = plain_loop(arguments.data, scratch / f"plain-{repeat}", arguments.image_size)
        plain_times.append(time.perf_counter() - started)
        shutil.rmtree(scratch / f"plain-{repeat}", ignore_errors=True)

    shutil.rmtree(scratch, ignore_errors=True)
    plain, flow_seconds = statistics.median(plain_times), statistics.median(flow_times)
    result = {
        "images": rows,
        "cores": os.cpu_count(),
        "plain_loop_seconds": [round(value, 2) for value in plain_times],
        "visionflow_flow_seconds": [round(value, 2) for value in flow_times],
        "speedup_vs_plain_loop": round(plain / flow_seconds, 2),
        "visionflow_images_per_second": round(rows / flow_seconds),
        "plain_images_per_second": round(rows / plain),
        "prefect_server_start_seconds": round(server_start_seconds, 1),
    }
    print("| side | seconds (median) | images/s | ratio |")
    print("|---|---|---|---|")
    print(f"| plain Pillow + pandas.to_parquet loop, 1 process | {plain:.1f} | {rows / plain:,.0f} | 1.00x |")
    print(
        f"| visionflow ingest flow (scan, hash, decode, 2 contracts, Parquet) | {flow_seconds:.1f} "
        f"| {rows / flow_seconds:,.0f} | {plain / flow_seconds:.2f}x |"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

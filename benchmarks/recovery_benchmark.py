"""Recovery benchmark: what a damaged or lost scoring output costs the next `visionflow score` of its drop.

    .venv/bin/python benchmarks/recovery_benchmark.py [--images 20000] [--repeats 2] [--json]

A drop of IMAGES random 16x16 PNGs is scored once by the real `visionflow score DROP --json` in a
scratch home (the tests' tiny model, registered on the spot). Then, the sides taking turns, the
same command runs again (`--engine keras`: the tiny model has no exports) after:

- nothing: the drop as it was, every file already scored (the baseline of a rerun);
- part-cut: the first committed prediction part cut to half its bytes (a crash of the disk, a copy
  that stopped), which the run sets aside and writes again from the ledger;
- folder-deleted: the drop's whole output folder deleted, which the run rebuilds from the ledger.

Each run must exit 0 with one row per file; the table gives its wall time, beside a first
scoring of the drop, and the warnings it printed. Results go to benchmarks/results/recovery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # The tiny model's helper lives in the tests package at the repository's root.
from load_benchmark import new_report, scratch_folder, write_report  # noqa: E402

from tests.scoring_helpers import register_tiny_model  # noqa: E402

SIDES = ("nothing", "part-cut", "folder-deleted")
VISIONFLOW = [sys.executable, "-m", "visionflow"]


def write_drop(drop: Path, images: int) -> None:
    """images random 16x16 RGB PNGs, a thousand per folder."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(images, 16, 16, 3), dtype=np.uint8)
    for index in range(images):
        folder = drop / f"batch-{index // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[index]).save(folder / f"{index:06d}.png")


def score(drop: Path, home: Path) -> dict:
    """Run `visionflow score DROP --json`; its summary with the exit code, wall seconds and warnings."""
    started = time.perf_counter()
    result = subprocess.run(
        [*VISIONFLOW, "score", str(drop), "--engine", "keras", "--json"], capture_output=True, text=True, check=False,
        env={**_environment(), "VISIONFLOW_HOME": str(home)},
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"visionflow score exited {result.returncode}:\n{result.stderr[-3000:]}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    warnings = [line for line in result.stderr.splitlines() if "| WARNING |" in line]
    return {"exit_code": 0, "seconds": round(seconds, 2), "summary": summary, "warnings": warnings}


def _environment() -> dict[str, str]:
    """This shell's environment without a home or Prefect server of its own: each run makes its own."""
    return {name: value for name, value in os.environ.items() if name not in ("VISIONFLOW_HOME", "PREFECT_API_URL")}


def damage(side: str, summary: dict) -> None:
    """Do to the drop's outputs what the side names."""
    predictions = Path(summary["predictions_path"])
    if side == "part-cut":
        part = sorted(predictions.glob("*.parquet"))[0]
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif side == "folder-deleted":
        shutil.rmtree(predictions.parent)


def rows_per_file(summary: dict) -> bool:
    """True when every file of the drop has exactly one row, prediction or rejection."""
    paths = []
    for folder in (summary["predictions_path"], summary["rejections_path"]):
        if Path(folder).is_dir():
            paths += ds.dataset(folder, format="parquet").to_table(columns=["path"]).column("path").to_pylist()
    return len(paths) == len(set(paths)) == summary["files"]


def run(images: int, repeats: int, scratch: Path) -> list[dict]:
    home, drop = scratch / "home", scratch / "drop"
    register_tiny_model(home / "models")
    write_drop(drop, images)
    first = score(drop, home)
    results = [{"side": "first scoring", **_row(first)}]
    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    for repeat in range(repeats):
        for side in SIDES if repeat % 2 == 0 else reversed(SIDES):
            damage(side, first["summary"])
            again = score(drop, home)
            results.append({"side": side, "repeat": repeat, **_row(again)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def _row(outcome: dict) -> dict:
    summary = outcome["summary"]
    return {
        "exit_code": outcome["exit_code"], "seconds": outcome["seconds"], "files": summary["files"],
        "scored": summary["scored"], "already_scored": summary["already_scored"],
        "one_row_per_file": rows_per_file(summary), "warnings": outcome["warnings"],
    }  # fmt: skip


def table(results: list[dict]) -> str:
    lines = [
        "| run | exit | seconds | scored | already scored | one row per file | warnings |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in results:
        lines.append(
            f"| {entry['side']} | {entry['exit_code']} | {entry['seconds']:.1f} | {entry['scored']:,} | "
            f"{entry['already_scored']:,} | {entry['one_row_per_file']} | {len(entry['warnings'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000, help="images in the drop")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, the sides taking turns")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/recovery.json"))
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    arguments = parser.parse_args()
    report = new_report()
    with scratch_folder("visionflow-recovery-") as scratch:
        report["results"] = run(arguments.images, arguments.repeats, scratch)
    write_report(report, arguments.output, arguments.json, table(report["results"]))


if __name__ == "__main__":
    main()

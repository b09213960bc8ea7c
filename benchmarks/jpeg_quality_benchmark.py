"""What JPEG compression of the images costs a preset's test accuracy: re-encoded copies, each trained.

    .venv/bin/python benchmarks/jpeg_quality_benchmark.py --data ../shared/datasets/cifar10 \
        --qualities 95:444 50:420 25:420 --preset default [--seed 0] [--work DIR]

First the dataset as it is, then one copy per QUALITY:SUBSAMPLING with every image decoded and
encoded again by Pillow at that quality (libjpeg's standard tables scaled by it) and chroma
subsampling (444: colour at full resolution; 420: colour at half the resolution each way). A
copy can only lose information against the source; the copy at 95:444 is the control that shows
what encoding again costs by itself, so the copies at lower qualities show how accuracy falls as
the images lose more. Each copy is trained through `visionflow train --data COPY --preset P
--seed S --json` in a home of its own (ingest included). Prints a markdown table and, last, a JSON
object.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frontier_benchmark import run_json  # noqa: E402
from load_benchmark import machine  # noqa: E402

VISIONFLOW = str(Path(sys.executable).with_name("visionflow"))
SUBSAMPLING = {"444": 0, "422": 1, "420": 2}  # Pillow's codes for the chroma subsampling names.


def parse_quality(text: str) -> tuple[int, str]:
    """'50:420' -> (50, '420'); argparse reports a ValueError as a usage error."""
    quality, _, subsampling = text.partition(":")
    if not quality.isdigit() or not 1 <= int(quality) <= 95 or subsampling not in SUBSAMPLING:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give QUALITY:SUBSAMPLING, quality 1-95, subsampling 444, 422 or 420"
        )
    return int(quality), subsampling


def reencoded(data: bytes, quality: int, subsampling: str) -> bytes:
    """The image in data, decoded and encoded again as a JPEG at quality with that subsampling."""
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality, subsampling=SUBSAMPLING[subsampling])
    return buffer.getvalue()


def _copy_one(job: tuple[str, str, int, str]) -> None:
    source, target, quality, subsampling = job
    Path(target).write_bytes(reencoded(Path(source).read_bytes(), quality, subsampling))


def reencode_dataset(source: Path, target: Path, quality: int, subsampling: str, workers: int = 2) -> int:
    """Copy every image file under source to the same place under target, re-encoded; how many."""
    jobs = []
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
            destination = (target / path.relative_to(source)).with_suffix(".jpg")
            destination.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(path), str(destination), quality, subsampling))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_copy_one, jobs, chunksize=512))
    return len(jobs)


def train(data: Path, home: Path, preset: str, seed: int) -> dict:
    """test_accuracy and training_seconds of one `visionflow train` run on data."""
    command = [VISIONFLOW, "train", "--data", str(data), "--preset", preset, "--seed", str(seed), "--home", str(home)]
    summary = run_json([*command, "--json"])
    return {"test_accuracy": summary["test_accuracy"], "training_seconds": summary["training_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="an image-folder dataset (train/ and test/)")
    parser.add_argument("--qualities", type=parse_quality, nargs="+", required=True, metavar="QUALITY:SUBSAMPLING")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="where the copies and homes go (default: a temporary folder)")
    arguments = parser.parse_args()
    if not arguments.data.is_dir():
        parser.error(f"--data {arguments.data} is not a folder")
    work = arguments.work or Path(tempfile.mkdtemp(prefix="visionflow-jpeg-"))
    rows = [{"images": "as they are", **train(arguments.data, work / "home-source", arguments.preset, arguments.seed)}]
    print(f"as they are: {rows[-1]['test_accuracy']:.4f}", file=sys.stderr)
    for quality, subsampling in arguments.qualities:
        name = f"q{quality}-{subsampling}"
        copy = work / name / arguments.data.name
        count = reencode_dataset(arguments.data, copy, quality, subsampling)
        trained = train(copy, work / f"home-{name}", arguments.preset, arguments.seed)
        rows.append({"images": f"encoded again at quality {quality}, {subsampling}", "files": count, **trained})
        print(f"{name}: {rows[-1]['test_accuracy']:.4f}", file=sys.stderr)
    print(f"| images | `{arguments.preset}` test accuracy, seed {arguments.seed} | training seconds |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['images']} | {row['test_accuracy']:.4f} | {row['training_seconds']:.0f} |")
    print(json.dumps({"machine": machine(), "preset": arguments.preset, "seed": arguments.seed, "runs": rows}))


if __name__ == "__main__":
    main()

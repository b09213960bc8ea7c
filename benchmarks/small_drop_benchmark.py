"""A small drop, cold, from the command line: `visionflow score` against a bare Keras script.

    .venv/bin/python benchmarks/small_drop_benchmark.py --models-home HOME --source ../shared/datasets/cifar10/test \\
        [--engine auto] [--out benchmarks/results/small-drop.json]

Each repetition, alternating: a new 10-image drop (source JPEGs with their own trailing bytes,
so the model must predict them) scored by `visionflow score DROP --json` in a fresh process,
and a bare Python script in a fresh process that imports Keras, loads the same model.keras,
decodes the same 10 files with Pillow and predicts them. Wall time of each process, start to
exit. HOME must hold a registry with a champion; the runs use a copy of it. --engine is passed to
`visionflow score` (without it, the command's own default, auto); the bare script is Keras either way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_SCRIPT = """
import sys
import numpy as np
from PIL import Image
import keras
model = keras.models.load_model(sys.argv[1], safe_mode=True)
height, width, channels = model.input_shape[1:]
images = [np.asarray(Image.open(path).convert("RGB" if channels == 3 else "L").resize((width, height)))
          for path in sys.argv[2:]]
batch = np.stack(images).reshape(len(images), height, width, channels)
print(model.predict(batch, verbose=0).argmax(axis=1).tolist())
"""


def new_drop(sources: list[Path], folder: Path, round_number: int, images: int) -> list[Path]:
    folder.mkdir(parents=True)
    written = []
    for index in range(images):
        source = sources[(round_number * images + index) % len(sources)]
        path = folder / f"{index:02d}.jpg"
        path.write_bytes(source.read_bytes() + f"small-drop-{round_number}-{index}".encode())
        written.append(path)
    return written


def timed(command: list[str], environment: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    return time.perf_counter() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-home", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--engine", default=None, help="`visionflow score --engine` (default: the command's own)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON object here")
    arguments = parser.parse_args()
    sources = sorted(arguments.source.rglob("*.jpg"))
    scratch = Path(tempfile.mkdtemp(prefix="visionflow-small-drop-"))
    home = scratch / "home"
    shutil.copytree(arguments.models_home / "models", home / "models")
    from visionflow.models.champion_pointer import read_champion

    champion = read_champion(home / "models").version
    model_file = home / "models" / champion / "model.keras"
    import os

    environment = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    times: dict[str, list[float]] = {"visionflow score": [], "bare Keras script": []}
    engine_option = ["--engine", arguments.engine] if arguments.engine else []
    engines_used = []
    try:
        for round_number in range(arguments.repeats + 1):  # Round 0 creates the Prefect database: not counted.
            drop = scratch / f"drop-{round_number}"
            files = new_drop(sources, drop, round_number, arguments.images)
            command = [sys.executable, "-m", "visionflow", "score", str(drop), "--home", str(home), "--json"]
            bare_command = [sys.executable, "-c", BARE_SCRIPT, str(model_file), *map(str, files)]
            if round_number % 2:  # The sides alternate which runs first.
                cli, output = timed([*command, *engine_option], environment)
                bare, _ = timed(bare_command, environment)
            else:
                bare, _ = timed(bare_command, environment)
                cli, output = timed([*command, *engine_option], environment)
            engines_used.append(json.loads(output.strip().splitlines()[-1]).get("engine"))
            if round_number:
                times["visionflow score"].append(cli)
                times["bare Keras script"].append(bare)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {side: statistics.median(values) for side, values in times.items()}
    ratio = medians["visionflow score"] / medians["bare Keras script"]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load_benchmark import machine

    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv),
              "model": champion, "engine": sorted(set(engines_used), key=str), "images": arguments.images,
              "seconds": times, "median_seconds": medians, "ratio": round(ratio, 2)}  # fmt: skip
    print(json.dumps(result, indent=2))
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

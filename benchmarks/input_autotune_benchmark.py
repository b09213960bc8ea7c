"""Epoch times of a preset's training step with tf.data's autotuning of the input pipeline on and off.

The training pipeline (tasks/train/recipe/fit.py) runs with fixed depths and tf.data's
autotuning off. For each side, this times the real training step on random CIFAR-shaped images,
epoch by epoch, fed by the dataset training builds and by the same dataset with autotuning
switched back on, the two alternating epoch by epoch in one process, so a slow spell of a shared
machine touches both.

    .venv/bin/python benchmarks/input_autotune_benchmark.py [--presets default] [--images 8192] [--epochs 12] \
        [--variant NAME PRESET '{"model": {...}, "train": {...}}' ...]

Prints each side's epoch seconds, their median and slowest, and, last, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops_benchmark import training_step_on_random_images  # noqa: E402
from load_benchmark import machine  # noqa: E402
from sides import add_side_arguments, requested_sides  # noqa: E402


def epoch_seconds(preset, images: int, epochs: int) -> dict:
    """Per pipeline (autotuning off as training has it, and on): its epochs' seconds, after one warm-up each."""
    import tensorflow as tf

    from visionflow.tasks.train.train_model import QUIET

    model, training_pipeline = training_step_on_random_images(preset, images)
    switched_on = tf.data.Options()
    switched_on.autotune.enabled = True
    pipelines = {"off": training_pipeline, "on": training_pipeline.with_options(switched_on)}
    seconds: dict[str, list[float]] = {autotuning: [] for autotuning in pipelines}
    for epoch in range(epochs + 1):
        for autotuning, dataset in pipelines.items():
            started = time.perf_counter()
            model.fit(dataset, epochs=1, **QUIET)
            if epoch:  # The first epoch of each pipeline traces and warms up.
                seconds[autotuning].append(round(time.perf_counter() - started, 2))
    # What each pipeline ran with, read back from it, so the report cannot mislabel a side.
    enabled = {autotuning: bool(dataset.options().autotune.enabled) for autotuning, dataset in pipelines.items()}
    return {"seconds": seconds, "autotune_enabled": enabled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_side_arguments(parser, ["default"])
    parser.add_argument("--images", type=int, default=8192, help="random training images per epoch")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per pipeline, after one untimed warm-up each")
    arguments = parser.parse_args()
    if arguments.images < 1 or arguments.epochs < 1:
        parser.error("--images and --epochs must be at least 1")
    sides = requested_sides(parser, arguments)
    from visionflow.home import configure_environment

    configure_environment()  # Prefect (imported with the training stage) stays offline, telemetry off.
    results = []
    print("| side | tf.data autotuning | epoch seconds | median | slowest | images/s at the median |")
    print("|---|---|---|---|---|---|")
    for name, preset in sides:
        measured = epoch_seconds(preset, arguments.images, arguments.epochs)
        results.append({"side": name, **measured})
        for autotuning, times in measured["seconds"].items():
            median = statistics.median(times)
            rate = f"{arguments.images / median:,.0f}"
            print(f"| {name} | {autotuning} | {' '.join(map(str, times))} | {median:.2f} | {max(times):.2f} | {rate} |")
    print(json.dumps({"machine": machine(), "images": arguments.images, "results": results}))


if __name__ == "__main__":
    main()

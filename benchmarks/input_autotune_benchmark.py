"""Epoch times of a preset's training step with tf.data's autotuning of the input pipeline on and off.

The training pipeline (tasks/train/training_input.py) runs with fixed depths and tf.data's
autotuning off. This times the preset's real training step on random CIFAR-shaped images, epoch
by epoch, with the same dataset as training builds it and the same with autotuning switched back
on, alternating the two sides epoch by epoch in one process, so a slow spell of a shared machine
touches both.

    .venv/bin/python benchmarks/input_autotune_benchmark.py [--preset default] [--images 8192] [--epochs 12]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--images", type=int, default=8192, help="random training images per epoch")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per side, after one untimed warm-up each")
    arguments = parser.parse_args()
    from visionflow.tasks.train.presets import PRESETS, resolve_preset

    if arguments.preset not in PRESETS:
        parser.error(f"unknown preset {arguments.preset!r}; choose one of {', '.join(PRESETS)}")
    if arguments.images < 1 or arguments.epochs < 1:
        parser.error("--images and --epochs must be at least 1")

    import tensorflow as tf

    from visionflow.tasks.train.train_model import QUIET

    model, fixed = training_step_on_random_images(resolve_preset(arguments.preset), arguments.images)
    switched_on = tf.data.Options()
    switched_on.autotune.enabled = True
    sides = {"autotuning off (training's pipeline)": fixed, "autotuning on": fixed.with_options(switched_on)}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for epoch in range(arguments.epochs + 1):
        for name, dataset in sides.items():
            started = time.perf_counter()
            model.fit(dataset, epochs=1, **QUIET)
            if epoch:  # The first epoch of each side traces and warms up.
                seconds[name].append(round(time.perf_counter() - started, 2))
    print("| side | epoch seconds | median | slowest | images/s at the median |")
    print("|---|---|---|---|---|")
    for name, times in seconds.items():
        median = statistics.median(times)
        rate = arguments.images / median
        print(f"| {name} | {' '.join(map(str, times))} | {median:.2f} | {max(times):.2f} | {rate:,.0f} |")
    report = {"machine": machine(), "preset": arguments.preset, "images": arguments.images, "seconds": seconds}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

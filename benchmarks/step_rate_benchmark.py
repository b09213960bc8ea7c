"""Training images/s of several sides' real training steps, their epochs alternating in one process.

benchmarks/flops_benchmark.py times one side after another, so a slow minute of a shared machine
lands on whichever side runs then; differences of a few percent between sides need them measured
side by side. This builds every side's model and training pipeline first (random CIFAR-shaped
images, as flops_benchmark does), then runs rounds of one epoch per side in turn (each round
starting one side later), and reports each side's median epoch and its rate against the first
side's.

    .venv/bin/python benchmarks/step_rate_benchmark.py [--presets default] [--images 8192] [--rounds 8] \
        [--variant NAME PRESET '{"model": {...}, "train": {...}}' ...]

Prints a markdown table and, last, a JSON object (the machine, the images, each side's seconds).
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


def alternating_epoch_seconds(sides: list[tuple[str, object]], images: int, rounds: int) -> dict[str, list[float]]:
    """Per side, the seconds of each timed epoch; every side runs one untimed warm-up epoch first."""
    from visionflow.tasks.train.train_model import QUIET

    steps = {name: training_step_on_random_images(preset, images) for name, preset in sides}
    seconds: dict[str, list[float]] = {name: [] for name, _preset in sides}
    names = list(steps)
    for round_index in range(rounds + 1):
        # Each round starts one side later, so no side always follows the same other one.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, dataset = steps[name]
            started = time.perf_counter()
            model.fit(dataset, epochs=1, **QUIET)
            if round_index:  # The first round traces the step and warms the caches.
                seconds[name].append(round(time.perf_counter() - started, 3))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_side_arguments(parser, ["default"])
    parser.add_argument("--images", type=int, default=8192, help="random training images per epoch")
    parser.add_argument("--rounds", type=int, default=8, help="timed epochs per side, after one untimed round")
    arguments = parser.parse_args()
    if arguments.images < 1 or arguments.rounds < 1:
        parser.error("--images and --rounds must be at least 1")
    sides = requested_sides(parser, arguments)
    from visionflow.home import configure_environment

    configure_environment()  # Prefect (imported with the training stage) stays offline, telemetry off.
    seconds = alternating_epoch_seconds(sides, arguments.images, arguments.rounds)
    first_median = statistics.median(seconds[sides[0][0]])
    print("| side | median epoch seconds | images/s at the median | rate against the first side | epoch seconds |")
    print("|---|---|---|---|---|")
    results = []
    for name, times in seconds.items():
        median = statistics.median(times)
        results.append({"side": name, "seconds": times, "median_seconds": median, "rate_ratio": first_median / median})
        rate = f"{arguments.images / median:,.0f}"
        print(f"| {name} | {median:.2f} | {rate} | {first_median / median:.2f}x | {' '.join(map(str, times))} |")
    print(json.dumps({"machine": machine(), "images": arguments.images, "results": results}))


if __name__ == "__main__":
    main()

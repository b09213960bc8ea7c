"""Training input benchmark: visionflow's tf.data input path against plain model.fit on NumPy.

Both sides train the same model (a preset's network, freshly built and seeded) on the same
images from an ingested dataset's train split, one epoch each, alternating, in one process.
The ratio is visionflow's images/s over plain fit's; the goal is at least 0.95.

    .venv/bin/python benchmarks/train_input_benchmark.py --dataset-dir DIR [--preset seed] [--images 20000]

DIR is a dataset folder written by `visionflow ingest` (it holds train.parquet). Prints a
markdown table and, last, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--preset", default="seed")
    parser.add_argument("--images", type=int, default=20_000, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    arguments = parser.parse_args()

    from visionflow.home import configure_environment

    configure_environment()
    import numpy as np

    from visionflow.images.splits import load_split_arrays
    from visionflow.tasks.train.recipe.distribution import training_strategy
    from visionflow.tasks.train.recipe.fit import compiled_model, make_dataset
    from visionflow.tasks.train.recipe.presets import PRESETS

    images, labels, metadata = load_split_arrays(arguments.dataset_dir / "train.parquet")
    images, labels = images[: arguments.images], labels[: arguments.images]
    preset = PRESETS[arguments.preset]
    classes = len(metadata.classes)
    steps = int(np.ceil(len(images) / preset.train.batch_size))
    targets = labels
    if preset.train.label_smoothing > 0:
        targets = np.eye(classes, dtype=np.float32)[labels]

    def pipeline_epoch() -> float:
        model = compiled_model(preset, images, classes, steps, training_strategy("none"))
        dataset = make_dataset(images, labels, preset.train, classes, training=True)
        started = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        return len(images) / (time.perf_counter() - started)

    def numpy_epoch() -> float:
        model = compiled_model(preset, images, classes, steps, training_strategy("none"))
        started = time.perf_counter()
        model.fit(images, targets, batch_size=preset.train.batch_size, epochs=1, verbose=0, shuffle=True)
        return len(images) / (time.perf_counter() - started)

    pipeline_rates, numpy_rates = [], []
    for _ in range(arguments.repeats):
        numpy_rates.append(numpy_epoch())
        pipeline_rates.append(pipeline_epoch())
    pipeline, plain = statistics.median(pipeline_rates), statistics.median(numpy_rates)
    print("| input path | images/s (median) | ratio |")
    print("|---|---|---|")
    print(f"| plain model.fit on in-memory NumPy arrays | {plain:,.0f} | 1.00x |")
    print(
        f"| visionflow tf.data path (seeded shuffle, batched gather, prefetch) "
        f"| {pipeline:,.0f} | {pipeline / plain:.2f}x |"
    )
    print(
        json.dumps(
            {
                "preset": arguments.preset,
                "images": len(images),
                "pipeline_images_per_second": [round(rate) for rate in pipeline_rates],
                "numpy_images_per_second": [round(rate) for rate in numpy_rates],
                "ratio": round(pipeline / plain, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Preset benchmark: test accuracy against training time of presets, epochs interleaved.

Each preset's network is built, compiled and fed exactly as `visionflow train` does it
(`compiled_model`, `make_dataset`), then trained one epoch at a time with validation, the
presets taking turns epoch by epoch in one process. Taking turns means a spell of slowness on
a shared machine falls on both sides alike, so the ratio of their training times is fair even
when the absolute seconds are not. Each side is then scored on the test split as the evaluation
stage scores it (flip test-time augmentation for networks trained with flips).

    .venv/bin/python benchmarks/preset_benchmark.py --dataset-dir DIR [--presets seed default] [--epochs N] \
        [--variant NAME PRESET '{"model": {...}, "train": {...}}' ...]

DIR is a dataset folder written by `visionflow ingest` (train, val and test Parquet). A
variant is a preset with some ModelConfig and TrainConfig fields changed, trained as one more
side (for ablations). A side whose recipe fits on the validation split too
(TrainConfig.train_on_validation) trains on both splits, as `visionflow train` does, and still
validates on the validation split. The first side is the baseline of the ratios. The callbacks
of the training stage (early stopping, checkpoints, the resumable backup) are left out; they cost
well under a second an epoch. Prints a markdown table and, last, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sides import add_side_arguments, changed_preset, requested_sides  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, required=True)
    add_side_arguments(parser, default_presets=["seed", "default"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every preset (default: each preset's own)")
    arguments = parser.parse_args()
    requested = requested_sides(parser, arguments)

    from visionflow.home import configure_environment

    configure_environment()
    from visionflow.images.splits import load_split_arrays
    from visionflow.models.prediction import predict_probabilities
    from visionflow.tasks.train.evaluate_model import EvaluationConfig
    from visionflow.tasks.train.recipe.distribution import training_strategy
    from visionflow.tasks.train.recipe.fit import compiled_model, fitting_arrays, make_dataset

    missing = [name for name in ("train", "val", "test") if not (arguments.dataset_dir / f"{name}.parquet").exists()]
    if missing:
        parser.error(
            f"{arguments.dataset_dir} has no {', '.join(missing)}.parquet: pass a folder `visionflow ingest` wrote"
        )
    splits = {name: load_split_arrays(arguments.dataset_dir / f"{name}.parquet") for name in ("train", "val", "test")}
    train_images, train_labels, metadata = splits["train"]
    classes = len(metadata.classes)
    sides = {}
    for name, preset in requested:
        if arguments.epochs is not None:
            preset = changed_preset(preset, {"train": {"epochs": arguments.epochs}})
        # The validation split joins the training images where the recipe fits on it, as in `visionflow train`.
        images, labels = fitting_arrays((train_images, train_labels), splits["val"][:2], preset.train)
        steps = -(-len(images) // preset.train.batch_size)
        sides[name] = {
            "preset": preset,
            "model": compiled_model(preset, images, classes, steps, training_strategy("none")),
            "train": make_dataset(images, labels, preset.train, classes, training=True),
            "train_images": len(images),
            "val": make_dataset(*splits["val"][:2], preset.train, classes, training=False),
            "seconds": 0.0,
            "cpu_seconds": 0.0,
            "val_accuracy": [],
        }

    most_epochs = max(side["preset"].train.epochs for side in sides.values())
    for epoch in range(most_epochs):
        # Alternate who goes first, so neither side always follows the other's cache-warming.
        order = list(sides) if epoch % 2 == 0 else list(reversed(sides))
        for name in order:
            side = sides[name]
            if epoch >= side["preset"].train.epochs:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            history = side["model"].fit(
                side["train"],
                validation_data=side["val"],
                initial_epoch=epoch,
                epochs=epoch + 1,
                verbose=0,
                shuffle=False,
            )
            side["seconds"] += time.perf_counter() - wall
            side["cpu_seconds"] += time.process_time() - cpu
            side["val_accuracy"].append(round(float(history.history["val_accuracy"][-1]), 4))
            print(f"epoch {epoch + 1} {name}: {side['val_accuracy'][-1]:.4f} val accuracy", file=sys.stderr)

    test_images, test_labels, _ = splits["test"]
    results = []
    for name, side in sides.items():
        evaluation = EvaluationConfig()
        probabilities = predict_probabilities(side["model"], test_images, evaluation.batch_size, evaluation.flip_tta)
        # The same model without the mirrored view, to show what flip test-time augmentation adds.
        single_view = predict_probabilities(side["model"], test_images, evaluation.batch_size, False)
        results.append(
            {
                "preset": name,
                "epochs": side["preset"].train.epochs,
                "test_accuracy": round(float((probabilities.argmax(axis=1) == test_labels).mean()), 4),
                "test_accuracy_single_view": round(float((single_view.argmax(axis=1) == test_labels).mean()), 4),
                "training_seconds": round(side["seconds"], 1),
                "training_cpu_seconds": round(side["cpu_seconds"], 1),
                "train_images": side["train_images"],
                "train_images_per_second": round(side["train_images"] * side["preset"].train.epochs / side["seconds"]),
                "val_accuracy": side["val_accuracy"],
            }
        )
    baseline = results[0]
    print("| preset | epochs | test accuracy | training seconds | time ratio | CPU seconds | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        row["time_ratio"] = round(row["training_seconds"] / baseline["training_seconds"], 3)
        row["cpu_ratio"] = round(row["training_cpu_seconds"] / baseline["training_cpu_seconds"], 3)
        print(
            f"| `{row['preset']}` | {row['epochs']} | {row['test_accuracy']:.4f} | {row['training_seconds']:.1f} "
            f"| {row['time_ratio']:.2f}x | {row['training_cpu_seconds']:.1f} | {row['cpu_ratio']:.2f}x |"
        )
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()

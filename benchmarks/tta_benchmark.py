"""Test accuracy of a model with no test-time augmentation, with flips, and with flips and shifts.

    .venv/bin/python benchmarks/tta_benchmark.py --model HOME/models/v0002/model.keras \
        --test DATASET_DIR/test.parquet

Views: the image; its mirror (what evaluation and scoring average for models trained with flips);
and airbench's six views, the image and its mirror each also shifted one pixel up-left and one
pixel down-right, weighted 1/2 for the unshifted pair and 1/4 for each shifted one. The shifted
views' uncovered edge is filled two ways: with black (pixel value 0), and with the image's own
border mirrored, as airbench fills it and as the training crops of the `default` preset pad.
Prints a markdown table and, last, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BATCH = 500


def shifted(images: np.ndarray, rows: int, columns: int, fill: str = "constant") -> np.ndarray:
    """images moved by rows down and columns right (each -1, 0 or 1); fill: numpy.pad's mode for the bare edge."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=fill)
    height, width = images.shape[1:3]
    return np.ascontiguousarray(padded[:, 1 - rows : 1 - rows + height, 1 - columns : 1 - columns + width])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a registered model.keras")
    parser.add_argument("--test", type=Path, required=True, help="the test split's Parquet file")
    arguments = parser.parse_args()

    from visionflow.home import configure_environment

    configure_environment()
    import keras

    from visionflow.images.splits import load_split_arrays

    model = keras.models.load_model(arguments.model, safe_mode=True)
    images, labels, _metadata = load_split_arrays(arguments.test)

    def predict(batch: np.ndarray) -> np.ndarray:
        parts = [model.predict_on_batch(batch[start : start + BATCH]) for start in range(0, len(batch), BATCH)]
        return np.concatenate([np.asarray(part, dtype=np.float32) for part in parts])

    def with_mirror(batch: np.ndarray) -> np.ndarray:
        return (predict(batch) + predict(np.ascontiguousarray(batch[:, :, ::-1]))) / 2

    started = time.perf_counter()
    plain = predict(images)
    flip = with_mirror(images)

    def six_views(fill: str) -> np.ndarray:
        shifts = with_mirror(shifted(images, -1, -1, fill)) + with_mirror(shifted(images, 1, 1, fill))
        return flip / 2 + shifts / 4

    sides = (
        ("none", plain),
        ("flip", flip),
        ("flip and shift, six views, black edge", six_views("constant")),
        ("flip and shift, six views, mirrored edge", six_views("reflect")),
    )
    results = {name: round(float((probabilities.argmax(axis=1) == labels).mean()), 4) for name, probabilities in sides}
    print("| test-time augmentation | test accuracy |")
    print("|---|---|")
    for name, accuracy in results.items():
        print(f"| {name} | {accuracy:.4f} |")
    print(json.dumps({"model": str(arguments.model), "images": len(labels), "accuracy": results,
                      "seconds": round(time.perf_counter() - started, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()

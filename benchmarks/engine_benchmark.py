"""Engine benchmark: Keras' own predict against every passed export, on the same decoded images.

For each model version, the images of a labelled folder (class subfolders; CIFAR-10's test split)
are decoded once by scoring's own decoder into one uint8 array, then every side predicts them,
the sides alternating within each repetition (in the reverse order every other one), the median
of --repeats kept:

- keras predict: `model.predict(images, batch_size=256, verbose=0)` on model.keras as registered;
- keras on_batch: the same model through predict_probabilities, as `visionflow score --engine keras` runs it;
- each export that passed its check (onnx, openvino, onnx-int8, openvino-int8) opened as scoring
  opens it and run through predict_probabilities, batches of 256.

Each side runs once on the images (one view) and once with flip test-time augmentation (TTA, the
image and its mirror averaged, as scoring predicts a model trained on mirrored images); the Keras
predict side then predicts the images and their mirrors, the mirroring timed with it. Also per
side: its test accuracy (with TTA where the model uses it) and its top-1 agreement with Keras
predict on the same views; the `auto` engine is the one resolve_engine(record, "auto") gives.

    .venv/bin/python benchmarks/engine_benchmark.py --models-home HOME --models v0001 v0002 \\
        --data ../shared/datasets/cifar10/test --repeats 3 --out benchmarks/results/engines.json

Prints a markdown table per model and, last, a JSON object, which is also written to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_benchmark import machine  # noqa: E402

BATCH_SIZE = 256  # Images per predict call on every side, as scoring batches them.
KERAS_PREDICT = "keras predict"
KERAS_ON_BATCH = "keras on_batch"


def decode_folder(folder: Path, class_names: list[str], shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every image under folder/<class>/ decoded as scoring decodes it (decode_image's pixels), and its label."""
    from visionflow.images.imaging import ImageSpec, decode_image, pixels_to_array

    spec = ImageSpec(*shape)
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    images = np.stack([pixels_to_array(decode_image(path.read_bytes(), spec).pixels, spec) for path in paths])
    labels = np.array([class_names.index(path.parent.name) for path in paths])
    return images, labels


def keras_predict(model, images: np.ndarray, flip_tta: bool) -> np.ndarray:
    """Keras' predict on the images, and with flip TTA on their mirrors too, averaged."""
    probabilities = model.predict(images, batch_size=BATCH_SIZE, verbose=0)
    if flip_tta:
        mirrored = np.ascontiguousarray(images[:, :, ::-1, :])
        probabilities = (probabilities + model.predict(mirrored, batch_size=BATCH_SIZE, verbose=0)) / 2
    return np.asarray(probabilities, dtype=np.float32)


def predictors(record, model) -> dict[str, Callable[[np.ndarray, bool], np.ndarray]]:
    """Each side's predict(images, flip_tta), every engine already opened and warm."""
    from visionflow.models.prediction import predict_probabilities
    from visionflow.models.scoring_model import open_export

    sides = {
        KERAS_PREDICT: lambda images, flip: keras_predict(model, images, flip),
        KERAS_ON_BATCH: lambda images, flip: predict_probabilities(model, images, BATCH_SIZE, flip),
    }
    for export in record.exports.engines if record.exports else []:
        if not export.passed:
            continue
        scoring = open_export(record.folder, record.exports, export.engine, record.version)
        sides[export.engine] = lambda images, flip, scoring=scoring: predict_probabilities(
            scoring, images, BATCH_SIZE, flip
        )
    return sides


def measure_model(models_root: Path, version: str, data: Path, repeats: int, decoded: dict) -> dict:
    """Every side of one model, timed alternating; accuracy and agreement from the last repetition."""
    from visionflow.models.prediction import uses_flip_tta
    from visionflow.models.registry import find_model, load_checked_model, read_metadata
    from visionflow.models.scoring_model import resolve_engine

    record = find_model(models_root, version)
    metadata = read_metadata(record.folder)
    shape = tuple(record.input_shape)
    if shape not in decoded:
        started = time.perf_counter()
        decoded[shape] = decode_folder(data, record.class_names, shape)
        print(f"decoded {len(decoded[shape][0]):,} images in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    images, labels = decoded[shape]
    model = load_checked_model(record)
    model_flip_tta = uses_flip_tta(model, None)
    sides = predictors(record, model)
    for predict in sides.values():  # Traces Keras' functions for a full and a shorter last batch.
        predict(images[: BATCH_SIZE + 16], False)
    views = [False, True]
    seconds: dict[str, dict[bool, list[float]]] = {side: {view: [] for view in views} for side in sides}
    outputs: dict[str, dict[bool, np.ndarray]] = {side: {} for side in sides}
    for repeat in range(repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for side in order:
            for view in views if repeat % 2 == 0 else list(reversed(views)):
                started = time.perf_counter()
                outputs[side][view] = sides[side](images, view)
                seconds[side][view].append(time.perf_counter() - started)
        print(f"{version}: repetition {repeat + 1} of {repeats} done", file=sys.stderr)
    reference = {view: outputs[KERAS_PREDICT][view].argmax(axis=1) for view in views}
    auto = resolve_engine(record, "auto")
    rows = []
    for side in sides:
        row = {"side": side, "auto": side == auto or (auto == "keras" and side == KERAS_ON_BATCH)}
        for view in views:
            name = "tta" if view else "single"
            median = statistics.median(seconds[side][view])
            predicted = outputs[side][view].argmax(axis=1)
            row[name] = {
                "seconds": [round(value, 3) for value in seconds[side][view]],
                "images_per_second": round(len(images) / median, 1),
                # The fastest repetition: other work on a shared machine only ever adds time.
                "best_images_per_second": round(len(images) / min(seconds[side][view]), 1),
                "accuracy": round(float((predicted == labels).mean()), 4),
                "agreement_with_keras": round(float((predicted == reference[view]).mean()), 5),
            }
        rows.append(row)
    for row in rows:
        for name in ("single", "tta"):
            for rate in ("images_per_second", "best_images_per_second"):
                ratio = round(row[name][rate] / rows[0][name][rate], 2)
                row[name][rate.replace("images_per_second", "ratio_to_keras_predict")] = ratio
    registered_accuracy = metadata.metrics.accuracy if metadata.metrics else None
    return {"model_version": record.version, "preset": metadata.preset, "precision": metadata.precision,
            "images": len(images), "model_flip_tta": model_flip_tta, "auto_engine": auto,
            "registered_accuracy": registered_accuracy, "sides": rows}  # fmt: skip


def table(result: dict) -> str:
    """One model's sides as a markdown table."""
    used = "tta" if result["model_flip_tta"] else "single"
    lines = [
        f"**{result['model_version']}** ({result['preset']}, auto = {result['auto_engine']}, "
        f"scoring uses {'flip TTA' if result['model_flip_tta'] else 'one view'}; accuracy and agreement with it)",
        "",
        "| side | one view images/s | x Keras predict (best) | TTA images/s | x Keras predict (best) | accuracy | "
        "agrees with Keras |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["sides"]:
        single, tta = row["single"], row["tta"]
        name = f"{row['side']} (auto)" if row["auto"] else row["side"]
        lines.append(
            f"| {name} | {single['images_per_second']:,.0f} | {single['ratio_to_keras_predict']:.2f}x "
            f"({single['best_ratio_to_keras_predict']:.2f}x) | {tta['images_per_second']:,.0f} | "
            f"{tta['ratio_to_keras_predict']:.2f}x ({tta['best_ratio_to_keras_predict']:.2f}x) | "
            f"{row[used]['accuracy']:.4f} | {row[used]['agreement_with_keras']:.2%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-home", type=Path, help="a VISIONFLOW_HOME with exported models")
    parser.add_argument("--models", nargs="+", default=["champion"], help="registered versions to measure")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10/test"),
                        help="a labelled image folder, <class>/<images>")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/engines.json"))
    parser.add_argument("--table-from", type=Path, default=None, help="print the tables of a written JSON and stop")
    arguments = parser.parse_args()
    if arguments.table_from:
        for result in json.loads(arguments.table_from.read_text())["models"]:
            print(table(result), end="\n\n")
        return
    if arguments.models_home is None:
        parser.error("--models-home is required (a VISIONFLOW_HOME with exported models)")
    decoded: dict = {}
    results = [
        measure_model(arguments.models_home / "models", version, arguments.data, arguments.repeats, decoded)
        for version in arguments.models
    ]
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv),
              "batch_size": BATCH_SIZE, "repeats": arguments.repeats, "models": results}  # fmt: skip
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=2))
    for result in results:
        print(table(result), end="\n\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

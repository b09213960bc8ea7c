"""Evaluation stage: score a trained model on the test split and report how it errs.

The stage computes accuracy, per-class precision, recall and F1, their macro averages, the
confusion matrix and the most-confused class pairs (EvaluationMetrics, whose format
visionflow/models/evaluation_metrics.py keeps for this stage). It writes metrics.json and a
confusion matrix PNG atomically, and publishes a markdown summary and a confusion table as
keyed Prefect artifacts, so each run's version shows under the same key in the UI. Optional
horizontal-flip test-time augmentation averages the softmax of every image and of its mirror.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from visionflow.atomic import atomic_path
from visionflow.engines.engine_exports import ModelExports
from visionflow.errors import BadInputError
from visionflow.images.splits import load_split_arrays, read_split_paths
from visionflow.models.evaluation_metrics import (
    ClassMetrics,
    ConfusedPair,
    EvaluationMetrics,
    write_evaluation_metrics,
)
from visionflow.models.prediction import predict_probabilities, uses_flip_tta
from visionflow.models.scoring_model import open_model_file
from visionflow.run_context import publish_image, publish_markdown, publish_table, run_logger

if TYPE_CHECKING:
    import keras

# Artifact keys: they must match ^[a-z0-9-]*$ for Prefect to version them under one name.
METRICS_ARTIFACT_KEY = "evaluation-metrics"
CONFUSION_ARTIFACT_KEY = "confusion-matrix"

# The column of the confusion table artifact that names each row's true class.
TRUE_CLASS_COLUMN = "true class"


class EvaluationConfig(BaseModel):
    """How the evaluation stage scores the test split."""

    batch_size: int = Field(default=512, ge=1)  # Images per predict batch; bounds memory on the accelerator.
    # Average the softmax of each image and its left-right mirror (test-time augmentation). None:
    # on exactly when the model was trained with random horizontal flips (it has a RandomFlip layer).
    flip_tta: bool | None = None
    most_confused: int = Field(default=5, ge=0)  # Number of most-confused (true, predicted) pairs to list.


class EvaluationResult(BaseModel):
    """What evaluating a model on a test split produced."""

    metrics: EvaluationMetrics  # metrics.json's content.
    metrics_path: Path  # metrics.json.
    confusion_png: Path  # The confusion matrix as a PNG.
    # predictions.parquet: one row per test image (path, true class, predicted class, confidence).
    predictions_path: Path | None = None


def compute_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], most_confused: int
) -> EvaluationMetrics:
    """The metrics of argmax predictions against labels; every class appears, tested or not."""
    class_count = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), class_count):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}, expected ({len(labels)}, {class_count}): "
            "one row per label and one column per class"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= class_count):
        raise ValueError(f"labels must be class indices in [0, {class_count}), found {labels.min()}..{labels.max()}")
    predictions = probabilities.argmax(axis=1)
    indices = list(range(class_count))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    matrix = confusion_matrix(labels, predictions, labels=indices)
    per_class = [
        ClassMetrics(
            class_name=name,
            precision=float(precision[index]),
            recall=float(recall[index]),
            f1=float(f1[index]),
            support=int(support[index]),
        )
        for index, name in enumerate(class_names)
    ]
    return EvaluationMetrics(
        accuracy=float((predictions == labels).mean()) if len(labels) else 0.0,
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        per_class=per_class,
        confusion_matrix=matrix.astype(int).tolist(),
        most_confused=most_confused_pairs(matrix, class_names, most_confused),
        test_images=len(labels),
    )


def most_confused_pairs(matrix: np.ndarray, class_names: list[str], limit: int) -> list[ConfusedPair]:
    """The off-diagonal cells with errors, largest count first; ties go in class order (true, then predicted)."""
    cells = [
        (-int(matrix[true, predicted]), true, predicted)
        for true in range(len(class_names))
        for predicted in range(len(class_names))
        if true != predicted and matrix[true, predicted] > 0
    ]
    return [
        ConfusedPair(true=class_names[true], predicted=class_names[predicted], count=-negative_count)
        for negative_count, true, predicted in sorted(cells)[:limit]
    ]


def plot_confusion_matrix(matrix: np.ndarray | list, class_names: list[str], path: Path) -> Path:
    """Write the confusion matrix as a PNG: counts in the cells, colours normalised per true class.

    Uses Matplotlib's object API with the Agg canvas, so no global backend is set and no window
    opens. The file is written under a temporary name and renamed into place.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape, dtype=float), where=row_totals > 0)
    side = max(4.0, 0.6 * len(class_names) + 2.0)
    figure = Figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    font_size = 9 if len(class_names) <= 12 else 7
    for true in ticks:
        for predicted in ticks:
            colour = "white" if shares[true, predicted] > 0.5 else "black"
            label = str(counts[true, predicted])
            axes.text(predicted, true, label, ha="center", va="center", color=colour, fontsize=font_size)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def metrics_markdown(metrics: EvaluationMetrics) -> str:
    """A markdown summary: headline numbers, the per-class table and the most-confused pairs."""
    lines = [
        "# Evaluation on the test split",
        "",
        f"- accuracy: **{metrics.accuracy:.4f}** on {metrics.test_images:,} images",
        f"- macro F1: **{metrics.macro_f1:.4f}** "
        f"(macro precision {metrics.macro_precision:.4f}, macro recall {metrics.macro_recall:.4f})",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in metrics.per_class:
        lines.append(f"| {row.class_name} | {row.precision:.4f} | {row.recall:.4f} | {row.f1:.4f} | {row.support} |")
    lines += ["", "## Most-confused pairs (true → predicted)", ""]
    if metrics.most_confused:
        lines += [f"- {pair.true} → {pair.predicted}: {pair.count}" for pair in metrics.most_confused]
    else:
        lines.append("- none: every test image was classified correctly")
    return "\n".join(lines) + "\n"


def confusion_table_rows(metrics: EvaluationMetrics) -> list[dict]:
    """One row per true class, one column per predicted class, for a Prefect table artifact."""
    names = [row.class_name for row in metrics.per_class]
    return [
        {TRUE_CLASS_COLUMN: true_name, **dict(zip(names, counts, strict=True))}
        for true_name, counts in zip(names, metrics.confusion_matrix, strict=True)
    ]


def check_model_fits(model: keras.Model, image_shape: tuple[int, ...], class_names: list[str]) -> None:
    """Raise BadInputError when the model's input or output does not match the test split."""
    expected = tuple(model.input_shape[1:])
    if len(expected) != len(image_shape) or any(
        want is not None and want != have for want, have in zip(expected, image_shape, strict=True)
    ):
        raise BadInputError(
            f"the model expects images of shape {expected} (height, width, channels) but the test split holds "
            f"{tuple(image_shape)}: evaluate with the split the model was trained on, or re-ingest with "
            "--image-size and --channels matching the model"
        )
    outputs = model.output_shape[-1]
    if outputs != len(class_names):
        raise BadInputError(
            f"the model predicts {outputs} classes but the test split has {len(class_names)} "
            f"({', '.join(class_names)}): evaluate with the dataset the model was trained on"
        )


def write_predictions(
    paths: list[str], labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], path: Path
) -> Path:
    """One row per test image, so two models' answers can be compared image by image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = np.asarray(class_names, dtype=object)
    table = pa.table({
        "path": paths,
        "true_class": names[labels].tolist(),
        "predicted_class": names[probabilities.argmax(axis=1)].tolist(),
        "confidence": probabilities.max(axis=1).astype(np.float32),
    })  # fmt: skip
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return path


def check_same_classes(split_classes: list[str], model_classes: list[str], model_name: str) -> None:
    """Raise BadInputError naming the classes one side has and the other lacks."""
    missing = [name for name in model_classes if name not in split_classes]
    extra = [name for name in split_classes if name not in model_classes]
    if missing or extra:
        parts = [f"no images of {', '.join(missing)}" if missing else "",
                 f"classes the model does not know: {', '.join(extra)}" if extra else ""]  # fmt: skip
        raise BadInputError(
            f"the labelled folder's classes differ from {model_name}'s ({'; '.join(part for part in parts if part)}): "
            f"give it one folder per class of the model ({', '.join(model_classes)})"
        )


def _require_file(path: str | Path, what: str) -> Path:
    """The path, or a BadInputError naming it when no file is there."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} not found: {path}")
    return path


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model_task(
    model_path: str,
    test_path: str,
    output_dir: Path,
    config: EvaluationConfig,
    expected_classes: list[str] | None = None,
    model_name: str = "the model",
    exports: ModelExports | None = None,
) -> EvaluationResult:
    """Prefect task: score the test split, write metrics.json and confusion.png, publish artifacts.

    expected_classes, when given, are the model's class names, which the split must have exactly.
    exports, when given, are the model's exports (files beside model_path): the test split is then
    scored on the engine scoring takes by default (auto), so the accuracy is what scoring delivers.
    """
    log = run_logger(__name__)
    started = time.perf_counter()
    model_file = _require_file(model_path, "model file")
    test_file = _require_file(test_path, "test split file")
    images, labels, metadata = load_split_arrays(test_file)
    class_names = list(metadata.classes)
    model = open_model_file(model_file, exports, model_name)
    engine = model.engine
    if expected_classes is not None:
        check_same_classes(class_names, list(expected_classes), model_name)
    check_model_fits(model, images.shape[1:], class_names)
    probabilities = predict_probabilities(model, images, config.batch_size, config.flip_tta)
    flip = uses_flip_tta(model, config.flip_tta)
    recorded = {"model_path": str(model_file), "test_path": str(test_file), "flip_tta": flip, "engine": engine}
    metrics = compute_metrics(labels, probabilities, class_names, config.most_confused).model_copy(update=recorded)
    output_dir = Path(output_dir)
    metrics_path = write_evaluation_metrics(metrics, output_dir / "metrics.json")
    png_path = plot_confusion_matrix(metrics.confusion_matrix, class_names, output_dir / "confusion.png")
    paths = read_split_paths(test_file)
    predictions_path = write_predictions(paths, labels, probabilities, class_names, output_dir / "predictions.parquet")
    publish_markdown(METRICS_ARTIFACT_KEY, metrics_markdown(metrics), "Test-split metrics of the evaluated model")
    publish_image("confusion-matrix-plot", png_path, "Confusion matrix (rows true, columns predicted)")
    publish_table(
        CONFUSION_ARTIFACT_KEY, confusion_table_rows(metrics), "Confusion matrix (rows true, columns predicted)"
    )
    log.info(
        "evaluated %d test images on %s in %.1f s: accuracy %.4f, macro F1 %.4f%s; metrics in %s",
        metrics.test_images,
        engine,
        time.perf_counter() - started,
        metrics.accuracy,
        metrics.macro_f1,
        " (flip TTA)" if metrics.flip_tta else "",
        metrics_path,
    )
    return EvaluationResult(
        metrics=metrics, metrics_path=metrics_path, confusion_png=png_path, predictions_path=predictions_path
    )

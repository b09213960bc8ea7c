"""Evaluation stage: metrics with known answers, the confusion PNG, and the task end to end."""

from __future__ import annotations

import base64
import json

import keras
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visionflow.errors import BadInputError
from visionflow.images.imaging import ImageSpec
from visionflow.images.splits import DatasetMetadata, split_schema
from visionflow.tasks.train.evaluate_model import (
    TRUE_CLASS_COLUMN,
    EvaluationConfig,
    compute_metrics,
    confusion_table_rows,
    evaluate_model_task,
    metrics_markdown,
    plot_confusion_matrix,
)

CLASSES = ["cat", "dog", "fox"]
SHAPE = (4, 6, 3)


def one_hot(predictions: list[int], classes: int) -> np.ndarray:
    """Probabilities that put 0.8 on the predicted class and share the rest."""
    probabilities = np.full((len(predictions), classes), 0.2 / (classes - 1), dtype=np.float32)
    probabilities[np.arange(len(predictions)), predictions] = 0.8
    return probabilities


def tiny_model(shape: tuple[int, int, int] = SHAPE, classes: int = 3, seed: int = 7) -> keras.Model:
    """A small Functional model: uint8 input, rescaled, flattened, one softmax layer with seeded weights."""
    inputs = keras.Input(shape=shape, dtype="uint8")
    hidden = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(inputs))
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    generator = np.random.default_rng(seed)
    kernel = generator.normal(0.0, 1.0, size=(int(np.prod(shape)), classes)).astype(np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(classes, dtype=np.float32)])
    return model


def random_images(count: int, shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


def write_test_split(path, images: np.ndarray, labels: np.ndarray, classes: list[str]):
    """A split file laid out exactly as write-parquet writes one."""
    height, width, channels = images.shape[1:]
    spec = ImageSpec(height, width, channels)
    schema = split_schema(spec, DatasetMetadata(classes=classes), "test")
    table = pa.table(
        {
            "pixels": pa.array([image.tobytes() for image in images], type=pa.binary(spec.pixel_bytes)),
            "label": pa.array(labels, type=pa.int32()),
            "path": pa.array([f"test/{classes[label]}/{index}.png" for index, label in enumerate(labels)]),
            "sha256": pa.array([f"{index:064x}" for index in range(len(labels))]),
        },
        schema=schema,
    )
    pq.write_table(table, path)
    return path


def test_metrics_have_the_known_answers_and_list_a_class_absent_from_the_test_set():
    # Four classes; "eel" (index 3) has no test image and is never predicted.
    classes = ["ant", "bee", "cow", "eel"]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predictions = [0, 0, 1, 2, 1, 1, 0, 2, 1, 1]
    metrics = compute_metrics(labels, one_hot(predictions, 4), classes, most_confused=5).model_dump(mode="json")
    assert metrics["accuracy"] == pytest.approx(5 / 10)
    assert metrics["test_images"] == 10
    assert metrics["confusion_matrix"] == [[2, 1, 1, 0], [1, 2, 0, 0], [0, 2, 1, 0], [0, 0, 0, 0]]
    by_class = {row["class"]: row for row in metrics["per_class"]}
    assert by_class["ant"]["recall"] == pytest.approx(2 / 4)
    assert by_class["bee"]["recall"] == pytest.approx(2 / 3)
    assert by_class["bee"]["precision"] == pytest.approx(2 / 5)
    assert by_class["cow"]["recall"] == pytest.approx(1 / 3)
    assert by_class["eel"] == {"class": "eel", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["macro_recall"] == pytest.approx((2 / 4 + 2 / 3 + 1 / 3 + 0) / 4)
    # cow -> bee has two errors; the three single errors follow in class order (true, then predicted).
    assert metrics["most_confused"] == [
        {"true": "cow", "predicted": "bee", "count": 2},
        {"true": "ant", "predicted": "bee", "count": 1},
        {"true": "ant", "predicted": "cow", "count": 1},
        {"true": "bee", "predicted": "ant", "count": 1},
    ]
    top_two = compute_metrics(labels, one_hot(predictions, 4), classes, most_confused=2).most_confused
    assert [pair.model_dump() for pair in top_two] == metrics["most_confused"][:2]


def test_metrics_reject_probabilities_that_do_not_match_the_classes():
    with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
        compute_metrics(np.array([0, 1]), one_hot([0, 1], 4), CLASSES, most_confused=3)


def test_markdown_and_confusion_table_summarise_the_metrics():
    metrics = compute_metrics(np.array([0, 1, 2, 2]), one_hot([0, 1, 2, 0], 3), CLASSES, most_confused=3)
    markdown = metrics_markdown(metrics)
    assert "accuracy: **0.7500** on 4 images" in markdown
    assert "| fox | 1.0000 | 0.5000 | 0.6667 | 2 |" in markdown
    assert "fox → cat: 1" in markdown
    rows = confusion_table_rows(metrics)
    assert rows[2] == {TRUE_CLASS_COLUMN: "fox", "cat": 1, "dog": 0, "fox": 1}


def test_confusion_png_opens_and_replaces_the_old_file(tmp_path):
    names = [f"class-{index}" for index in range(10)]
    matrix = np.random.default_rng(1).integers(0, 50, size=(10, 10))
    matrix[9] = 0  # A class with no test image must not break the per-row normalisation.
    path = tmp_path / "plots" / "confusion.png"
    path.parent.mkdir()
    path.write_bytes(b"stale")
    assert plot_confusion_matrix(matrix, names, path) == path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
    assert [entry.name for entry in path.parent.iterdir()] == ["confusion.png"]


@pytest.fixture
def saved_model_and_split(tmp_path):
    """A saved .keras model and a 9-image test split of the same shape and classes."""
    model_path = tmp_path / "model.keras"
    tiny_model().save(model_path)
    labels = np.array([0, 1, 2] * 3, dtype=np.int32)
    split_path = write_test_split(tmp_path / "test.parquet", random_images(9, seed=3), labels, CLASSES)
    return model_path, split_path


def test_task_writes_metrics_json_and_confusion_png(saved_model_and_split, tmp_path):
    model_path, split_path = saved_model_and_split
    output_dir = tmp_path / "evaluation"
    config = EvaluationConfig(batch_size=4, flip_tta=True, most_confused=2)
    result = evaluate_model_task.fn(str(model_path), str(split_path), output_dir, config)
    written = json.loads((output_dir / "metrics.json").read_text())
    assert result.metrics_path == output_dir / "metrics.json"
    assert result.confusion_png == output_dir / "confusion.png"
    assert written["test_images"] == 9 and written["flip_tta"] is True
    assert [row["class"] for row in written["per_class"]] == CLASSES
    assert sum(map(sum, written["confusion_matrix"])) == 9
    assert len(written["most_confused"]) <= 2
    assert list(written) == [
        "accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class", "confusion_matrix", "most_confused",
        "test_images", "model_path", "test_path", "flip_tta", "engine",
    ], "metrics.json keeps its fields, in the order evaluations have always written them, new ones last"  # fmt: skip
    assert written["engine"] == "keras", "a model without exports is evaluated on Keras"
    assert result.metrics.model_dump(mode="json") == written and result.metrics.accuracy == written["accuracy"]
    with Image.open(output_dir / "confusion.png") as image:
        assert image.format == "PNG"
    answers = pd.read_parquet(result.predictions_path)
    assert answers["true_class"].tolist() == [CLASSES[label] for label in [0, 1, 2] * 3]
    correct = (answers["true_class"] == answers["predicted_class"]).mean()
    assert correct == pytest.approx(written["accuracy"]) and answers["confidence"].between(0, 1).all()


def test_task_names_the_classes_a_labelled_folder_lacks_or_adds(saved_model_and_split, tmp_path):
    model_path, split_path = saved_model_and_split
    with pytest.raises(BadInputError, match=r"differ from v0007's \(no images of zebra; classes the model does not"):
        evaluate_model_task.fn(
            str(model_path), str(split_path), tmp_path / "out", EvaluationConfig(), [*CLASSES[:2], "zebra"], "v0007"
        )


def test_task_names_both_shapes_when_the_model_does_not_fit_the_split(tmp_path):
    model_path = tmp_path / "wide.keras"
    tiny_model(shape=(5, 5, 3)).save(model_path)
    split_path = write_test_split(tmp_path / "test.parquet", random_images(3), np.array([0, 1, 2]), CLASSES)
    with pytest.raises(BadInputError, match=r"\(5, 5, 3\).*\(4, 6, 3\).*--image-size"):
        evaluate_model_task.fn(str(model_path), str(split_path), tmp_path / "out", EvaluationConfig())
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_task_rejects_a_model_with_another_number_of_classes(tmp_path):
    model_path = tmp_path / "four.keras"
    tiny_model(classes=4).save(model_path)
    split_path = write_test_split(tmp_path / "test.parquet", random_images(3), np.array([0, 1, 2]), CLASSES)
    with pytest.raises(BadInputError, match="predicts 4 classes but the test split has 3"):
        evaluate_model_task.fn(str(model_path), str(split_path), tmp_path / "out", EvaluationConfig())


def test_task_names_the_missing_file(saved_model_and_split, tmp_path):
    model_path, split_path = saved_model_and_split
    with pytest.raises(BadInputError, match="model file not found: .*absent.keras"):
        evaluate_model_task.fn(str(tmp_path / "absent.keras"), str(split_path), tmp_path / "out", EvaluationConfig())
    with pytest.raises(BadInputError, match="test split file not found: .*absent.parquet"):
        evaluate_model_task.fn(str(model_path), str(tmp_path / "absent.parquet"), tmp_path / "out", EvaluationConfig())


@pytest.mark.usefixtures("prefect_server")
def test_inside_a_flow_the_task_publishes_keyed_artifacts(saved_model_and_split, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    model_path, split_path = saved_model_and_split

    @flow(name="evaluate-test")
    def evaluate_flow():
        return evaluate_model_task(str(model_path), str(split_path), tmp_path / "evaluation", EvaluationConfig())

    state = evaluate_flow(return_state=True)
    assert state.is_completed()
    run_filter = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        artifacts = {artifact.key: artifact for artifact in client.read_artifacts(artifact_filter=run_filter)}
    assert artifacts["evaluation-metrics"].type == "markdown"
    assert "# Evaluation on the test split" in artifacts["evaluation-metrics"].data
    assert artifacts["confusion-matrix"].type == "table"
    assert len(json.loads(artifacts["confusion-matrix"].data)) == len(CLASSES)
    plot = artifacts["confusion-matrix-plot"]
    assert plot.type == "image" and plot.data.startswith("data:image/png;base64,")
    png = base64.b64decode(plot.data.removeprefix("data:image/png;base64,"))
    assert png == (tmp_path / "evaluation" / "confusion.png").read_bytes(), "the picture itself, embedded"


def test_a_model_with_exports_is_evaluated_on_the_engine_scoring_takes_and_scores_as_keras_does(tmp_path):
    from visionflow.images.splits import split_file
    from visionflow.models.registry import find_model

    from tests.engine_helpers import register_exported_model

    version = register_exported_model(tmp_path / "models", tmp_path / "dataset")
    record = find_model(tmp_path / "models", version)
    test_path = str(split_file(tmp_path / "dataset", "test"))
    config = EvaluationConfig(batch_size=8)
    on_engine = evaluate_model_task.fn(str(record.model_path), test_path, tmp_path / "engine", config,
                                       exports=record.exports)  # fmt: skip
    on_keras = evaluate_model_task.fn(str(record.model_path), test_path, tmp_path / "keras", config)
    assert on_engine.metrics.engine == record.exports.fastest_passed().engine and on_keras.metrics.engine == "keras"
    assert on_engine.metrics.confusion_matrix == on_keras.metrics.confusion_matrix, "parity: the same answers"

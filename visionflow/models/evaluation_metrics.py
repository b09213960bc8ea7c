"""The evaluation metrics format: an evaluation's metrics.json, and the headline part a model's metadata repeats.

The evaluation stage (tasks/train/evaluate_model.py) computes these records and writes them
through this module; the gate, the comparison and the registration read them as typed fields.
They live beside the registry because a registered model's metadata.json repeats the headline
numbers (RecordedMetrics), so models can be listed and gated without opening metrics.json, and
the registry sits below the stages.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from visionflow.atomic import write_json_atomically


class ClassMetrics(BaseModel):
    """How well one class was recognised on the test split (a row of the per-class table)."""

    # The files spell the class's name "class", which Python keeps for itself.
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    class_name: str = Field(alias="class")  # The class's name.
    precision: float  # Share of the images predicted as this class that are of it, 0 to 1.
    recall: float  # Share of this class's images predicted as it, 0 to 1.
    f1: float  # Harmonic mean of precision and recall, 0 to 1.
    support: int  # Test images of this class.


class ConfusedPair(BaseModel):
    """One off-diagonal cell of the confusion matrix: images of one class predicted as another."""

    true: str  # The images' class.
    predicted: str  # The class the model gave them.
    count: int  # How many images.


class RecordedMetrics(BaseModel):
    """The headline test results a registered model's metadata repeats.

    A metadata file written by an older visionflow, or by hand, may hold only some of them, so each
    may be missing (None, or no rows); `complete` tells whether the gate can judge them.
    """

    accuracy: float | None = None  # Share of test images classified correctly, 0 to 1.
    macro_precision: float | None = None  # Mean of the per-class precisions, 0 to 1.
    macro_recall: float | None = None  # Mean of the per-class recalls, 0 to 1.
    macro_f1: float | None = None  # Mean of the per-class F1 scores, 0 to 1.
    per_class: list[ClassMetrics] = []  # Every class of the model, in class order, tested or not.

    def complete(self) -> bool:
        """Whether the accuracy and the per-class rows the gate reads are all there."""
        return self.accuracy is not None and bool(self.per_class)

    def weakest_class(self) -> ClassMetrics:
        """The class with the lowest recall (the first of them in class order)."""
        return min(self.per_class, key=lambda row: row.recall)

    def recall_by_class(self) -> dict[str, float]:
        """Each class's recall, 0 to 1, by class name."""
        return {row.class_name: row.recall for row in self.per_class}


class EvaluationMetrics(RecordedMetrics):
    """metrics.json: everything one evaluation of a model on a test split measured (every headline figure)."""

    accuracy: float  # Share of test images classified correctly, 0 to 1.
    macro_precision: float  # Mean of the per-class precisions, 0 to 1.
    macro_recall: float  # Mean of the per-class recalls, 0 to 1.
    macro_f1: float  # Mean of the per-class F1 scores, 0 to 1.
    per_class: list[ClassMetrics]  # Every class of the model, in class order, tested or not.
    confusion_matrix: list[list[int]]  # Images per (true class row, predicted class column), in class order.
    most_confused: list[ConfusedPair]  # The cells with the most errors, largest first.
    test_images: int  # Images in the test split.
    model_path: str | None = None  # The model file evaluated; None until the evaluation stage records it.
    test_path: str | None = None  # The test split file; None until the evaluation stage records it.
    flip_tta: bool | None = None  # Whether each image's mirror was averaged in; None until recorded.
    engine: str | None = None  # The engine that predicted (keras, onnx, openvino, ...); None until recorded.

    def recorded(self) -> RecordedMetrics:
        """The headline part, as a registered model's metadata keeps it."""
        return RecordedMetrics.model_validate(self.model_dump(include=set(RecordedMetrics.model_fields)))


def write_evaluation_metrics(metrics: EvaluationMetrics, path: Path) -> Path:
    """Write metrics.json as indented JSON under a temporary name, then rename it into place."""
    return write_json_atomically(path, metrics.model_dump(mode="json"))

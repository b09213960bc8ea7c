"""Helpers for the tests of the gate, the comparison and the registry: test metrics made to order."""

from __future__ import annotations

from visionflow.models.evaluation_metrics import ClassMetrics, EvaluationMetrics


def evaluation_metrics(accuracy: float, recalls: dict[str, float]) -> EvaluationMetrics:
    """Metrics with this accuracy and these per-class recalls (each class's precision and F1 equal its recall)."""
    per_class = [
        ClassMetrics(class_name=name, precision=recall, recall=recall, f1=recall, support=10)
        for name, recall in recalls.items()
    ]
    mean = sum(recalls.values()) / len(recalls)
    return EvaluationMetrics(
        accuracy=accuracy, macro_precision=mean, macro_recall=mean, macro_f1=mean, per_class=per_class,
        confusion_matrix=[], most_confused=[], test_images=10 * len(recalls),
    )  # fmt: skip

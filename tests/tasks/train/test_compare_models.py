"""Two models side by side: accuracy, per-class recall, and the images they disagree on."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from visionflow.errors import BadInputError
from visionflow.tasks.train.compare_models import Comparison, compare, compare_models_task
from visionflow.tasks.train.evaluate_model import EvaluationResult

from tests.metrics_helpers import evaluation_metrics


def answers(predicted: list[str]) -> pd.DataFrame:
    truth = ["cat", "cat", "dog", "dog"]
    return pd.DataFrame({"path": [f"{index}.png" for index in range(4)], "true_class": truth,
                         "predicted_class": predicted, "confidence": [0.9] * 4})  # fmt: skip


def metrics(accuracy: float, cat: float, dog: float):
    return evaluation_metrics(accuracy, {"cat": cat, "dog": dog})


def test_disagreements_and_recalls_are_put_side_by_side():
    first, second = answers(["cat", "dog", "dog", "cat"]), answers(["cat", "cat", "dog", "dog"])
    result = compare(("v0001", "v0002"), (metrics(0.5, 0.5, 0.5), metrics(1.0, 1.0, 1.0)), (first, second))
    assert result["accuracy"] == {"v0001": 0.5, "v0002": 1.0} and result["images"] == 4
    assert result["disagreements"] == 2 and result["only_second_right"] == 2 and result["only_first_right"] == 0
    assert result["recall_by_class"][0] == {"class": "cat", "v0001": 0.5, "v0002": 1.0, "difference": 0.5}
    assert result["examples"][0] == {"path": "1.png", "true_class": "cat", "v0001": "dog", "v0002": "cat"}


def test_the_largest_recall_differences_come_first_whatever_their_sign():
    first, second = answers(["cat", "dog", "dog", "cat"]), answers(["cat", "cat", "dog", "dog"])
    result = compare(("v0001", "v0002"), (metrics(0.5, 0.9, 0.2), metrics(0.5, 0.8, 0.6)), (first, second))
    comparison = Comparison(**result, comparison_path="comparison.json")
    assert comparison.largest_recall_differences(1) == [("dog", 0.4)]
    assert comparison.largest_recall_differences(3) == [("dog", 0.4), ("cat", -0.1)]


def test_evaluations_of_different_images_are_refused():
    other = answers(["cat"] * 4).assign(path=[f"other-{index}.png" for index in range(4)])
    with pytest.raises(BadInputError, match="did not score the same images"):
        compare(("a", "b"), (metrics(1, 1, 1), metrics(1, 1, 1)), (answers(["cat"] * 4), other))


def test_the_task_writes_comparison_json(tmp_path):
    evaluations = []
    for name, predicted in (("first", ["cat", "dog", "dog", "cat"]), ("second", ["cat", "cat", "dog", "dog"])):
        path = tmp_path / f"{name}.parquet"
        answers(predicted).to_parquet(path)
        evaluations.append(EvaluationResult(metrics=metrics(0.5, 0.5, 0.5), metrics_path=tmp_path / "m.json",
                                            confusion_png=tmp_path / "c.png", predictions_path=path))  # fmt: skip
    comparison = compare_models_task.fn(("v0001", "v0002"), tuple(evaluations), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "comparison.json").read_text())["disagreements"] == 2
    assert comparison.comparison_path == str(tmp_path / "out" / "comparison.json")

"""The evaluate flow on a real Prefect server: a model on a new labelled folder, beside another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionflow.errors import BadInputError
from visionflow.flows.evaluate import evaluate_flow

from tests.scoring_helpers import register_tiny_model


@pytest.mark.usefixtures("prefect_server")
def test_a_model_is_evaluated_on_a_labelled_folder_and_compared(home, make_image_folder):
    register_tiny_model(home / "models")
    register_tiny_model(home / "models", champion=False)
    folder = make_image_folder(layout="split", per_class=4, test_per_class=2)  # Both splits count: 18 images.
    summary = evaluate_flow(data=str(folder), compare="v0002", home=str(home))
    assert summary.model_version == "v0001" and summary.images == 18
    metrics = json.loads(Path(summary.metrics_path).read_text())
    assert metrics["accuracy"] == summary.accuracy and sum(map(sum, metrics["confusion_matrix"])) == 18
    comparison = summary.comparison
    assert comparison.models == ["v0001", "v0002"] and comparison.images == 18
    assert comparison.disagreements >= comparison.only_first_right + comparison.only_second_right
    assert len(comparison.examples) == min(comparison.disagreements, 20)
    assert comparison.accuracy == {"v0001": summary.accuracy, "v0002": comparison.accuracy["v0002"]}


@pytest.mark.usefixtures("prefect_server")
def test_a_folder_with_other_classes_or_the_same_model_twice_is_refused(home, make_image_folder):
    register_tiny_model(home / "models", classes=["blue", "green", "red", "white"])
    folder = make_image_folder(layout="flat", per_class=6)
    with pytest.raises(BadInputError, match="no images of white"):
        evaluate_flow(data=str(folder), home=str(home))
    with pytest.raises(BadInputError, match="--compare names v0001, the model being evaluated"):
        evaluate_flow(data=str(folder), compare="v0001", home=str(home))

"""The approval gate's decisions."""

from __future__ import annotations

import pytest

from visionflow.models.registry import ModelMetadata
from visionflow.tasks.train.gate_model import GateConfig, comparable_champion, decide

from tests.metrics_helpers import evaluation_metrics as candidate

GOOD = candidate(0.80, {"cat": 0.75, "dog": 0.85})


def test_the_first_model_is_promoted_when_it_clears_the_floors():
    decision = decide(GOOD, None, None, GateConfig())
    assert decision.promoted and "no champion yet" in decision.reason


@pytest.mark.parametrize(
    ("metrics", "words"),
    [
        (candidate(0.40, {"cat": 0.4, "dog": 0.4}), "test accuracy 0.4000 is below the floor 0.5000"),
        (candidate(0.70, {"cat": 0.05, "dog": 0.95}), "recall of class 'cat' is 0.0500, below the floor 0.1000"),
    ],
)
def test_floors_reject_with_the_reason(metrics, words):
    decision = decide(metrics, None, None, GateConfig())
    assert not decision.promoted and decision.reason == words


def test_a_candidate_worse_than_the_champion_on_the_same_split_is_kept_out():
    decision = decide(GOOD, "v0003", 0.85, GateConfig())
    assert not decision.promoted
    assert decision.reason == "test accuracy 0.8000 is worse than champion v0003's 0.8500 on the same test split"
    assert decide(GOOD, "v0003", 0.85, GateConfig(champion_tolerance=0.06)).promoted


def test_an_equal_or_better_candidate_replaces_the_champion():
    assert decide(GOOD, "v0003", 0.80, GateConfig()).promoted
    decision = decide(GOOD, "v0003", 0.70, GateConfig())
    assert decision.promoted and decision.champion_version == "v0003" and decision.champion_accuracy == 0.70


def test_a_champion_for_other_classes_or_shapes_is_not_comparable():
    metadata = ModelMetadata(class_names=["cat", "dog"], input_shape=[32, 32, 3])
    assert comparable_champion(metadata, ["cat", "dog"], [32, 32, 3])
    assert not comparable_champion(metadata, ["cat", "dog", "fox"], [32, 32, 3])
    assert not comparable_champion(metadata, ["cat", "dog"], [28, 28, 1])
    decision = decide(GOOD, "v0001", None, GateConfig())
    assert decision.promoted and "no comparable champion" in decision.reason

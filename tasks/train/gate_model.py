"""Stage: the approval gate between a trained model and the champion slot.

A candidate is promoted only when its test accuracy and every class's recall clear configured
floors and it is not worse than the current champion measured on the candidate's own test
split: the champion is re-evaluated there, so the comparison is like for like even when the
champion was trained on an older version of the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.images.splits import load_split_arrays
from visionflow.models.champion_pointer import champion_dir
from visionflow.models.evaluation_metrics import RecordedMetrics
from visionflow.models.prediction import predict_probabilities
from visionflow.models.registry import MODEL_FILE, ModelMetadata, read_metadata
from visionflow.models.scoring_model import open_model_file
from visionflow.run_context import run_logger
from visionflow.tasks.train.evaluate_model import EvaluationConfig, EvaluationResult, compute_metrics


class GateConfig(BaseModel):
    """When a newly trained model may replace the champion."""

    min_test_accuracy: float = Field(default=0.5, ge=0.0, le=1.0)  # Least test accuracy, 0..1.
    min_class_recall: float = Field(default=0.1, ge=0.0, le=1.0)  # Least recall of any single class, 0..1.
    # How much lower than the champion's accuracy on the same test split the candidate may be,
    # in accuracy points (0.0: it must be at least as good).
    champion_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate becomes the champion, and why, in a sentence a person can read."""

    promoted: bool
    reason: str
    champion_version: str | None  # The champion it was compared with, if any.
    champion_accuracy: float | None  # That champion's accuracy on the candidate's test split.


def decide(
    candidate: RecordedMetrics, champion_version: str | None, champion_accuracy: float | None, gate: GateConfig
) -> GateDecision:
    """Apply the gate to a candidate's test metrics (its accuracy and per-class recalls).

    champion_accuracy is the champion measured on the candidate's own test split, or None when
    there is no champion or it cannot be measured there (other classes or image shape).
    """
    accuracy = candidate.accuracy
    if accuracy < gate.min_test_accuracy:
        reason = f"test accuracy {accuracy:.4f} is below the floor {gate.min_test_accuracy:.4f}"
        return GateDecision(False, reason, champion_version, champion_accuracy)
    weakest = candidate.weakest_class()
    if weakest.recall < gate.min_class_recall:
        recall, floor = weakest.recall, gate.min_class_recall
        reason = f"recall of class '{weakest.class_name}' is {recall:.4f}, below the floor {floor:.4f}"
        return GateDecision(False, reason, champion_version, champion_accuracy)
    if champion_accuracy is not None and accuracy < champion_accuracy - gate.champion_tolerance:
        reason = (
            f"test accuracy {accuracy:.4f} is worse than champion {champion_version}'s {champion_accuracy:.4f} "
            "on the same test split"
        )
        return GateDecision(False, reason, champion_version, champion_accuracy)
    if champion_accuracy is None:
        against = "no comparable champion" if champion_version else "no champion yet"
        reason = f"passed the floors (accuracy {accuracy:.4f}); {against}"
    else:
        reason = f"test accuracy {accuracy:.4f} is not worse than champion {champion_version}'s {champion_accuracy:.4f}"
    return GateDecision(True, reason, champion_version, champion_accuracy)


def comparable_champion(champion: ModelMetadata, class_names: list[str], image_shape: list[int]) -> bool:
    """A champion can be measured on a test split only with the same classes and input shape."""
    return champion.class_names == class_names and champion.input_shape == image_shape


def measure_champion(
    test_path: str, models_root: Path, evaluation: EvaluationConfig, log
) -> tuple[str | None, float | None]:
    """(champion version, its accuracy on the test split at test_path); accuracy None when it
    cannot be measured there (other classes or input shape), both None without a champion."""
    folder = champion_dir(Path(models_root))
    if folder is None:
        return None, None
    images, labels, split_metadata = load_split_arrays(test_path)
    champion = read_metadata(folder)
    if not comparable_champion(champion, split_metadata.classes, list(images.shape[1:])):
        log.info("champion %s has other classes or input shape; comparing on the floors only", folder.name)
        return folder.name, None
    # The champion predicts on the engine it scores with, as the candidate was evaluated on its own.
    model = open_model_file(folder / MODEL_FILE, champion.exports, folder.name)
    engine = model.engine
    probabilities = predict_probabilities(model, images, evaluation.batch_size, evaluation.flip_tta)
    accuracy = compute_metrics(labels, probabilities, split_metadata.classes, evaluation.most_confused).accuracy
    log.info("champion %s scores %.4f on this test split (on %s)", folder.name, accuracy, engine)
    return folder.name, accuracy


@task(name="gate-model", cache_policy=NO_CACHE)
def gate_model_task(
    candidate: EvaluationResult, test_path: str, models_root: Path, gate: GateConfig, evaluation: EvaluationConfig
) -> GateDecision:
    """Prefect task: measure the champion on the candidate's test split and apply the gate."""
    log = run_logger(__name__)
    champion_version, champion_accuracy = measure_champion(test_path, models_root, evaluation, log)
    decision = decide(candidate.metrics, champion_version, champion_accuracy, gate)
    log.info("gate: %s (%s)", "promote" if decision.promoted else "keep the champion", decision.reason)
    return decision

"""Train stage: whether the labels store holds enough labels the champion has not learnt from.

A retraining that an automation starts (a drop drifted, labels arrived) may ask to wait for N new
labels: training a new model for a handful of labels costs a full training run and rarely changes
the gate's decision. New means beyond the count of the snapshot the champion trained with (0 for
a champion trained on the folders alone).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.labels.labels_store import LabelsSnapshot
from visionflow.models.champion_pointer import champion_dir
from visionflow.models.registry import read_metadata
from visionflow.run_context import run_logger


class NewLabels(BaseModel):
    """How many accepted labels the champion has not learnt from, against how many a run waits for."""

    new: int  # Accepted labels beyond those of the champion's snapshot.
    wanted: int  # The run's min_new_labels.
    champion_version: str | None  # The champion compared with; None when there is none.

    @property
    def enough(self) -> bool:
        return self.new >= self.wanted

    def message(self) -> str:
        against = f"champion {self.champion_version}" if self.champion_version else "no champion yet"
        return (
            f"waiting for labels: {self.new} accepted labels beyond those {against} learnt from, {self.wanted} wanted"
        )


def count_new_labels(snapshot: LabelsSnapshot, models_root: Path, wanted: int) -> NewLabels:
    """The snapshot's labels beyond those of the snapshot the champion trained with."""
    folder = champion_dir(models_root)
    learnt = read_metadata(folder).labels if folder else None
    new = max(snapshot.count - (learnt.count if learnt else 0), 0)
    return NewLabels(new=new, wanted=wanted, champion_version=folder.name if folder else None)


@task(name="check-new-labels", cache_policy=NO_CACHE)
def check_new_labels_task(snapshot: LabelsSnapshot, models_root: Path, wanted: int) -> NewLabels:
    """Prefect task: count the new labels and say whether the run trains or waits."""
    counted = count_new_labels(snapshot, models_root, wanted)
    run_logger(__name__).info(
        "%d new accepted labels, %d wanted: %s", counted.new, wanted, "training" if counted.enough else "waiting"
    )
    return counted

"""The records metadata.json nests (visionflow/models/registry.py owns the file): the gate's decision, and
the reviewed labels a model learnt from.

They live apart from the registry so it stays one readable room; the registry imports and re-exports them.
"""

from __future__ import annotations

from pydantic import BaseModel


class GateRecord(BaseModel):
    """The approval gate's decision on a model at its registration."""

    promoted: bool = False  # True when the gate made it the champion; a file that does not say reads as not.
    reason: str | None = None  # The decision, in a sentence; None when the file records none.
    champion_version: str | None = None  # The champion it was compared with; None when there was none.
    # That champion's accuracy on the model's test split, 0 to 1; None when it could not be measured there.
    champion_accuracy: float | None = None


class LabelsSnapshotRecord(BaseModel):
    """The labels store's snapshot a model trained with (`visionflow train --with-labels`), and what it added.

    The snapshot is visionflow/labels/labels_store.py's LabelsSnapshot; the training dataset's dataset.json
    says where every label went (tasks/ingest/add_labels.py).
    """

    count: int  # Accepted labels in the snapshot: contents with one agreed class each.
    digest: str  # sha256 over the snapshot's (content, class) pairs: the same digest, the same labels.
    conflicts: int  # Contents held out of the snapshot because people gave them different classes.
    added_to_train: int  # Labelled images added to the train split as rows of their own.
    relabelled: int  # Images of the base train split whose folder label the reviewed label replaced.

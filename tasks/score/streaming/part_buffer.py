"""The rows a scoring run has yet to write, written and committed one Parquet part at a time.

Prediction and rejection rows wait here until part_rows of them have gathered; then they are
written as one part and committed to the ledger with the contents the model newly predicted
(visionflow/ledger/drops.py, DropOutputs.save_part). The buffer also keeps the run's tallies: the rows
written, the predicted class mix, the confidence histogram and the pixel profile for drift.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from visionflow.images.image_profile import ProfileAccumulator
from visionflow.ledger.drops import PREDICTIONS, REJECTIONS, DropOutputs, predictions_table, rejections_table
from visionflow.ledger.ledger import PredictionLedger
from visionflow.models.registry import ModelRecord

# Edges of the confidence histogram the report shows: ten bins of width 0.1.
CONFIDENCE_BINS = np.linspace(0.0, 1.0, 11)

# Rejected files a result lists by name; the rejections Parquet lists them all.
MAX_REJECTION_EXAMPLES = 20


class RejectionExample(BaseModel):
    """A rejected file a scoring summary names."""

    path: str  # The file, relative to the drop.
    reason: str  # Why it was not scored, in a sentence.


class PartBuffer:
    """Rows waiting to be written; a part is written and committed every part_rows rows."""

    def __init__(self, outputs: DropOutputs, ledger: PredictionLedger, record: ModelRecord, part_rows: int):
        self.outputs, self.ledger, self.record, self.part_rows = outputs, ledger, record, part_rows
        self.paths: list[str] = []
        self.sha256s: list[str] = []
        self.probabilities: list[np.ndarray] = []
        self.scored_at: list[str] = []
        self.new_predictions: list[tuple[str, np.ndarray, str]] = []
        self.rejections: list[tuple[str, str | None, int | None, str]] = []
        self.rejection_examples: list[RejectionExample] = []
        self.prediction_rows = self.rejection_rows = 0
        self.profile = ProfileAccumulator(channels=record.input_shape[-1])
        self.confidences = np.zeros(len(CONFIDENCE_BINS) - 1, dtype=np.int64)

    def add_predictions(self, paths: list[str], sha256: str, probabilities: np.ndarray, scored_at: str, new: bool):
        """Rows for every file holding one content; new marks a content the model just predicted."""
        for path in paths:
            self.paths.append(path)
            self.sha256s.append(sha256)
            self.probabilities.append(probabilities)
            self.scored_at.append(scored_at)
        if new:
            self.new_predictions.append((sha256, probabilities, scored_at))
        if len(self.paths) >= self.part_rows:
            self.flush_predictions()

    def add_rejection(self, path: str, sha256: str | None, size: int | None, reason: str) -> None:
        self.note_rejection(path, reason)
        self.rejections.append((path, sha256, size, reason))
        if len(self.rejections) >= self.part_rows:
            self.flush_rejections()

    def note_rejection(self, path: str, reason: str) -> None:
        """An example for the summary, of a rejection this run writes or an earlier run wrote."""
        if len(self.rejection_examples) < MAX_REJECTION_EXAMPLES:
            self.rejection_examples.append(RejectionExample(path=path, reason=reason))

    def flush_predictions(self) -> None:
        """Write and commit the waiting prediction rows as one part."""
        if not self.paths:
            return
        version, classes = self.record.version, self.record.class_names
        probabilities = np.stack(self.probabilities)
        table = predictions_table(self.paths, self.sha256s, probabilities, self.scored_at, classes, version)
        files = [(path, sha256, "predicted") for path, sha256 in zip(self.paths, self.sha256s, strict=True)]
        self.outputs.save_part(PREDICTIONS, table, self.ledger, files, self.new_predictions, version)
        self.profile.add_classes(table.column("label").to_pylist())
        self.confidences += np.histogram(probabilities.max(axis=1), bins=CONFIDENCE_BINS)[0]
        self.prediction_rows += len(self.paths)
        self.paths, self.sha256s, self.probabilities, self.scored_at, self.new_predictions = [], [], [], [], []

    def flush_rejections(self) -> None:
        """Write and commit the waiting rejection rows as one part."""
        if not self.rejections:
            return
        table = rejections_table(self.rejections, self.record.version)
        files = [(path, sha256 or "", "rejected") for path, sha256, _, _ in self.rejections]
        self.outputs.save_part(REJECTIONS, table, self.ledger, files, [], self.record.version)
        self.rejection_rows += len(self.rejections)
        self.rejections = []

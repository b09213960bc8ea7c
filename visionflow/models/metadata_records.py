"""The records metadata.json nests (visionflow/models/registry.py owns the file): the gate's decision, the
reviewed labels a model learnt from, and the machine its recipe was sized for.

They live apart from the registry so it stays one readable room; the registry imports and re-exports them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from visionflow.network.hardware import MachineFacts, MachineKind


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


class MachineChoiceRecord(BaseModel):
    """How the machine shaped a preset's recipe (tasks/train/recipe/machine_recipes.py): what it reported,
    the kind that made, and the settings that kind changed."""

    kind: MachineKind  # The kind the recipe was sized for (visionflow/network/hardware.py).
    # "machine": read off the machine that trained; "request": the run named the kind (--machine-kind).
    chosen_by: Literal["machine", "request"] = "machine"
    facts: MachineFacts = MachineFacts()  # What the training machine reported.
    # The preset's settings the kind changed, as "model.conv_filters=[24, 96, 96]"; empty when the preset's
    # own settings suit the kind.
    changes: list[str] = []
    # Of those, the ones the run's own settings replaced (--precision, --widths, --epochs), as "train.epochs".
    overridden: list[str] = []

    def describe(self) -> str:
        """One line for the log and `models show`."""
        facts = self.facts
        flags = " ".join(facts.flags) or "no vector flags known"
        cap = f", oneDNN capped at {facts.onednn_max_isa}" if facts.onednn_max_isa else ""
        gpus = f", {len(facts.gpus)} GPU(s)" if facts.gpus else ""
        source = "named by the run" if self.chosen_by == "request" else "this machine's"
        changed = ", ".join(self.changes) or "the preset as it is"
        kept = f" (the run's own {', '.join(self.overridden)})" if self.overridden else ""
        generation = f" ({facts.generation})" if facts.generation else ""
        machine = f"{facts.cpu}{generation}, {facts.cores} cores, {flags}{cap}{gpus}"
        return f"recipe for {self.kind} ({source}; {machine}): {changed}{kept}"

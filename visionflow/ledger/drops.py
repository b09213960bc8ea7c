"""What a drop is: its control files, where its scoring results live, and how they are written.

A drop is a folder of files to score. Two names at its top are signals about the drop, not
inputs: _READY (the drop is complete) and _FAILED.txt (why scoring it failed).

VISIONFLOW_HOME/predictions/<drop name>/ holds predictions/ and rejections/ (each a folder of
Parquet part files, one pyarrow dataset), reports/ (one JSON report per run) and a lock file.
Parts are reserved in the ledger, written under a hidden name, committed, and only then given
their visible name (DropOutputs.save_part; see visionflow/ledger/ledger.py). Part files the ledger
cannot account for are adopted or set aside, never deleted, and committed parts that are lost or
damaged are written again from the ledger (DropOutputs.recover). The drop's name is its identity:
the same folder moved from an inbox to a done folder keeps its outputs and its exactly-once record.
The parts' schemas and tables are in visionflow/ledger/part_tables.py (named here too).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visionflow.errors import BusyError
from visionflow.ledger.ledger import PENDING, PredictionLedger, part_files
from visionflow.ledger.part_repair import ClassNames, PartRepair, repair_committed_parts
from visionflow.ledger.part_tables import PREDICTIONS as PREDICTIONS
from visionflow.ledger.part_tables import PROBABILITY_PREFIX as PROBABILITY_PREFIX
from visionflow.ledger.part_tables import REJECTION_SCHEMA as REJECTION_SCHEMA
from visionflow.ledger.part_tables import REJECTIONS as REJECTIONS
from visionflow.ledger.part_tables import now_utc as now_utc
from visionflow.ledger.part_tables import predictions_schema as predictions_schema
from visionflow.ledger.part_tables import predictions_table as predictions_table
from visionflow.ledger.part_tables import rejections_table as rejections_table
from visionflow.ledger.part_tables import write_part


@dataclass(frozen=True)
class DropOutputs:
    """The output folders of one drop."""

    root: Path  # VISIONFLOW_HOME/predictions/<drop name>

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS

    @property
    def rejections(self) -> Path:
        return self.root / REJECTIONS

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @contextmanager
    def exclusive(self, wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold the drop's lock: one run at a time writes or validates a drop, across processes.

        Waits up to wait_seconds for another run to let go, then raises BusyError.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_seconds
        with open(self.root / ".lock", "w") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BusyError(
                            f"drop {self.name} is being scored by another run right now; try again when it has finished"
                        ) from None
                    time.sleep(0.5)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def recover(self, ledger: PredictionLedger, class_names_of: ClassNames = lambda version: None) -> Recovery:
        """Settle what an interrupted run, a lost ledger or lost part files left, before this run writes.

        Temporary files of unfinished writes and parts the ledger holds as pending (written, never
        committed) are deleted: their rows were never counted, and this run scores those files
        again. A committed part still under its hidden name gets its visible name. Parts the
        ledger does not know at all were written whole, so they are adopted: their rows are read
        back into the ledger. A part that cannot be read is moved aside, never deleted. Committed
        parts that are missing or damaged are written again from the ledger (part_repair.py),
        prediction parts with the class names class_names_of gives for their model version.
        """
        recovery = Recovery()
        for kind, folder in ((PREDICTIONS, self.predictions), (REJECTIONS, self.rejections)):
            committed, pending = ledger.parts(self.name, kind), ledger.parts(self.name, kind, PENDING)
            if committed and not folder.is_dir():
                recovery.lost_folders.append(folder)
            for path in part_files(folder):
                if path.name in committed:
                    continue
                if path.name[1:] in committed and not (folder / path.name[1:]).exists():
                    # Committed, but its run was killed before the part got its visible name.
                    os.replace(path, folder / path.name[1:])
                    recovery.published.append(folder / path.name[1:])
                elif path.name.startswith(".") or path.name in pending:
                    path.unlink()
                    recovery.removed.append(path)
                elif self._adopt(ledger, kind, path):
                    recovery.adopted.append(path)
                else:
                    aside = self.root / "set-aside" / kind / path.name
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, aside)
                    recovery.set_aside.append(aside)
            for name in pending:
                ledger.forget_part(self.name, kind, name)
            aside = self.root / "set-aside" / kind
            recovery.repaired += repair_committed_parts(self.name, folder, kind, aside, ledger, class_names_of)
        return recovery

    def _adopt(self, ledger: PredictionLedger, kind: str, path: Path) -> bool:
        """Record a part the ledger does not know from its own rows; False when it cannot be read."""
        try:
            table = pq.read_table(path)
            versions = set(table.column("model_version").to_pylist())
            paths, sha256s = table.column("path").to_pylist(), table.column("sha256").to_pylist()
        except (OSError, KeyError, pa.ArrowException):
            return False
        if len(versions) > 1:
            return False
        version = versions.pop() if versions else ""
        if kind == REJECTIONS:
            files = [(path_, sha256 or "", "rejected") for path_, sha256 in zip(paths, sha256s, strict=True)]
            ledger.commit_part(self.name, kind, path.name, files, [], version, adopt=True)
            return True
        columns = [name for name in table.column_names if name.startswith(PROBABILITY_PREFIX)]
        probabilities = np.column_stack([table.column(name).to_numpy() for name in columns]).astype(np.float32)
        scored_at = [stamp.isoformat(timespec="microseconds") for stamp in table.column("scored_at").to_pylist()]
        files = [(path_, sha256, "predicted") for path_, sha256 in zip(paths, sha256s, strict=True)]
        predictions = list(zip(sha256s, probabilities, scored_at, strict=True))
        ledger.commit_part(self.name, kind, path.name, files, predictions, version, adopt=True)
        return True

    def save_part(
        self,
        kind: str,
        table: pa.Table,
        ledger: PredictionLedger,
        files: list[tuple[str, str, str]],
        new_predictions: list[tuple[str, np.ndarray, str]],
        model_version: str,
    ) -> str:
        """Write rows as a new part of kind and commit them to the ledger; return the part's name.

        The part is reserved in the ledger, written under a hidden name (readers of the folder
        skip it), committed with its files and new predictions (see PredictionLedger.commit_part),
        and only then given its visible name, so readers never see rows that do not count.
        """
        name = f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}.parquet"
        ledger.reserve_part(self.name, kind, name)
        staged = self.root / kind / f".{name}"
        write_part(table, staged, self.root)  # On disk before the ledger records it as committed.
        ledger.commit_part(self.name, kind, name, files, new_predictions, model_version)
        os.replace(staged, self.root / kind / name)
        return name


@dataclass
class Recovery:
    """What settling a drop's outputs before a run did."""

    removed: list[Path] = field(default_factory=list)  # Uncommitted parts and temporary files, deleted.
    published: list[Path] = field(default_factory=list)  # Committed parts a killed run left hidden, now visible.
    adopted: list[Path] = field(default_factory=list)  # Whole parts the ledger did not know, read back into it.
    set_aside: list[Path] = field(default_factory=list)  # Unreadable unknown parts, moved to set-aside/.
    lost_folders: list[Path] = field(default_factory=list)  # Output folders gone though the ledger knew parts in them.
    repaired: list[PartRepair] = field(default_factory=list)  # Committed parts missing or damaged, written again.

    def warnings(self, drop_name: str) -> list[str]:
        """One sentence per finding a person should know of: parts adopted, set aside, or written again."""
        adopted = f"drop {drop_name}: the ledger did not know {len(self.adopted)} parts; read their rows back into it"
        lines = [adopted] if self.adopted else []
        lines += [
            f"drop {drop_name}: an unreadable part the ledger did not know was moved to {path}"
            for path in self.set_aside
        ]
        for folder in self.lost_folders:
            parts = [repair for repair in self.repaired if repair.part.parent == folder]
            rows = sum(repair.rows for repair in parts)
            lines.append(
                f"drop {drop_name}: its output folder {folder} was lost; its committed rows ({rows} in "
                f"{len(parts)} part{'' if len(parts) == 1 else 's'}) were written again from the scoring ledger"
            )
            lines += [repair.warning(drop_name) for repair in parts if repair.problem]
        lost = set(self.lost_folders)
        lines += [repair.warning(drop_name) for repair in self.repaired if repair.part.parent not in lost]
        return lines

"""What a drop is: its control files, where its scoring results live, and how they are written.

A drop is a folder of files to score. Two names at its top are signals about the drop, not
inputs: _READY (the drop is complete) and _FAILED.txt (why scoring it failed).

VISIONFLOW_HOME/predictions/<drop name>/ holds predictions/ and rejections/ (each a folder of
Parquet part files, one pyarrow dataset), reports/ (one JSON report per run) and a lock file.
Parts are reserved in the ledger, written under a hidden name, committed, and only then given
their visible name (DropOutputs.save_part; see visionflow/ledger/ledger.py). Part files the ledger
cannot account for are adopted or set aside, never deleted (DropOutputs.recover). The drop's name
is its identity: the same folder moved from an inbox to a done folder keeps its outputs and its
exactly-once record.
"""

from __future__ import annotations

import errno
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

from visionflow.atomic import atomic_path
from visionflow.errors import BusyError, NoSpaceError
from visionflow.ledger.ledger import PENDING, PredictionLedger, part_files

PREDICTIONS = "predictions"
REJECTIONS = "rejections"
PROBABILITY_PREFIX = "probability_"  # Per-class probability columns are probability_<class name>.

REJECTION_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # Relative to the drop.
        ("sha256", pa.string()),  # Null when the file could not be read.
        ("bytes", pa.int64()),  # File size; null when unknown.
        ("reason", pa.string()),  # Why the file was not scored, in words a person can act on.
        ("model_version", pa.string()),
        ("rejected_at", pa.timestamp("us", tz="UTC")),
    ]
)


def predictions_schema(class_names: list[str]) -> pa.Schema:
    """Prediction rows: the file, the predicted class and its confidence, every probability."""
    fields = [
        ("path", pa.string()),  # Relative to the drop.
        ("sha256", pa.string()),  # Content digest; the ledger's key.
        ("label", pa.string()),  # The predicted class name.
        ("confidence", pa.float32()),  # Probability of the predicted class, 0 to 1.
        *[(f"{PROBABILITY_PREFIX}{name}", pa.float32()) for name in class_names],
        ("model_version", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),  # When the model computed this content's probabilities.
    ]
    return pa.schema(fields, metadata={"class_names": ",".join(class_names)})


def now_utc() -> str:
    """The current time as ISO 8601 UTC with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


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

    def recover(self, ledger: PredictionLedger) -> Recovery:
        """Settle what an interrupted run or a lost ledger left, before this run writes.

        Temporary files of unfinished writes and parts the ledger holds as pending (written, never
        committed) are deleted: their rows were never counted, and this run scores those files
        again. A committed part still under its hidden name gets its visible name. Parts the
        ledger does not know at all were written whole, so they are adopted: their rows are read
        back into the ledger. A part that cannot be read is moved aside, never deleted.
        """
        recovery = Recovery()
        for kind, folder in ((PREDICTIONS, self.predictions), (REJECTIONS, self.rejections)):
            committed, pending = ledger.parts(self.name, kind), ledger.parts(self.name, kind, PENDING)
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
        # Durable: on disk before the ledger records it as committed, power cuts included.
        try:
            with atomic_path(staged, durable=True) as temporary:
                pq.write_table(table, temporary)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise NoSpaceError(
                    f"the disk holding {self.root} is full; free some space and run the same command again: "
                    "parts committed before are kept, and the rest is scored then"
                ) from error
            raise
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


def predictions_table(
    paths: list[str],
    sha256s: list[str],
    probabilities: np.ndarray,
    scored_at: list[str],
    class_names: list[str],
    model_version: str,
) -> pa.Table:
    """Prediction rows for files whose probabilities (N x classes, float32) are known."""
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(len(paths), len(class_names))
    best = probabilities.argmax(axis=1) if len(paths) else np.empty(0, dtype=np.int64)
    columns = {
        "path": paths,
        "sha256": sha256s,
        "label": np.asarray(class_names, dtype=object)[best].tolist(),
        "confidence": probabilities[np.arange(len(paths)), best],
    }
    for index, name in enumerate(class_names):
        columns[f"{PROBABILITY_PREFIX}{name}"] = probabilities[:, index]
    columns["model_version"] = [model_version] * len(paths)
    columns["scored_at"] = pa.array([datetime.fromisoformat(text) for text in scored_at], pa.timestamp("us", "UTC"))
    return pa.Table.from_pydict(columns, schema=predictions_schema(class_names))


def rejections_table(rows: list[tuple[str, str | None, int | None, str]], model_version: str) -> pa.Table:
    """Rejection rows from (path, sha256 or None, bytes or None, reason) tuples."""
    now = datetime.fromisoformat(now_utc())
    columns = {
        "path": [row[0] for row in rows],
        "sha256": [row[1] for row in rows],
        "bytes": [row[2] for row in rows],
        "reason": [row[3] for row in rows],
        "model_version": [model_version] * len(rows),
        "rejected_at": [now] * len(rows),
    }
    return pa.Table.from_pydict(columns, schema=REJECTION_SCHEMA)

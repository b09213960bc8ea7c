"""What a drop is: its control files, where its scoring results live, and how they are written.

A drop is a folder of files to score. Two names at its top are signals about the drop, not
inputs: _READY (the drop is complete) and _FAILED.txt (why scoring it failed).

VISIONFLOW_HOME/predictions/<drop name>/ holds predictions/ and rejections/ (each a folder of
Parquet part files, one pyarrow dataset), reports/ (one JSON report per run) and a lock file.
Parts are written under a temporary name and renamed into place; see visionflow/ledger.py for how
they are committed. The drop's name is its identity: the same folder moved from an inbox to a
done folder keeps its outputs and its exactly-once record.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visionflow.atomic import atomic_path
from visionflow.errors import BusyError
from visionflow.ledger import PredictionLedger, orphan_parts

READY_MARKER = "_READY"  # A file of this name at the top of a drop says the drop is complete.
FAILURE_NOTE = "_FAILED.txt"  # Written at the top of a drop that failed; a failed drop put back is scored again.
CONTROL_FILES = frozenset({READY_MARKER, FAILURE_NOTE})  # Signals about the drop, not inputs.

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

    def remove_orphans(self, ledger: PredictionLedger) -> list[Path]:
        """Delete part files the ledger never committed (a run killed mid-write); return them."""
        removed = []
        for kind, folder in ((PREDICTIONS, self.predictions), (REJECTIONS, self.rejections)):
            for path in orphan_parts(folder, ledger.parts(self.name, kind)):
                path.unlink()
                removed.append(path)
        return removed

    def write_part(self, kind: str, table: pa.Table) -> str:
        """Write a table as a new part file of kind, atomically; return the part's file name."""
        name = f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}.parquet"
        # Durable: on disk before the ledger records it, power cuts included.
        with atomic_path(self.root / kind / name, durable=True) as temporary:
            pq.write_table(table, temporary)
        return name


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

"""The rows of a drop's outputs: the Parquet schemas of its prediction and rejection parts, and
the tables a part is written from (visionflow/ledger/drops.py writes them, visionflow/ledger/
part_repair.py writes lost ones again from the ledger)."""

from __future__ import annotations

import errno
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visionflow.atomic import atomic_path
from visionflow.errors import NoSpaceError

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


def write_part(table: pa.Table, path: Path, outputs_root: Path) -> None:
    """Write a part file whole or not at all, on disk before anything records it (power cuts
    included); a full disk under the drop's outputs (outputs_root) is told as such."""
    try:
        with atomic_path(path, durable=True) as temporary:
            pq.write_table(table, temporary)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise NoSpaceError(
                f"the disk holding {outputs_root} is full; free some space and run the same command again: "
                "parts committed before are kept, and the rest is scored then"
            ) from error
        raise

"""Reading a drop's committed prediction rows back: what a review chooses from and finds files by.

The rows are the drop's outputs (visionflow/ledger/drops.py writes them): one committed Parquet
part per batch, hidden temporary and set-aside files excluded. The drop folder itself is the one
the newest scoring report names (each report records the absolute folder it scored under "drop"),
since a drop may have moved from an inbox to a done folder since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from visionflow.ledger.drops import PROBABILITY_PREFIX, DropOutputs


@dataclass(frozen=True)
class ScoredRows:
    """One model's prediction rows of one drop."""

    paths: list[str]  # Each file, relative to the drop.
    sha256s: list[str]  # Each file's content digest.
    probabilities: np.ndarray  # float32, one row per file, one column per class (in class_names order).
    class_names: list[str]  # The classes, in the order of the probability columns.


def committed_parts(outputs: DropOutputs) -> list[Path]:
    """The drop's committed prediction part files (visible names only: temporary and set-aside
    files start with a dot)."""
    folder = outputs.predictions
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.glob("*.parquet") if not path.name.startswith("."))


def read_scored_rows(outputs: DropOutputs, model_version: str, class_names: list[str]) -> ScoredRows:
    """The drop's rows for one model version, with the probability of every class in class_names.

    Each part holds the rows of one model version; parts are read one by one, since models with
    other classes wrote parts with other probability columns.
    """
    columns = ["path", "sha256", *[f"{PROBABILITY_PREFIX}{name}" for name in class_names]]
    tables = []
    for part in committed_parts(outputs):
        if not set(columns) <= set(pq.read_schema(part).names):
            continue  # Written by a model with other classes: none of its rows are this model's.
        tables.append(pq.read_table(part, columns=columns, filters=pc.field("model_version") == model_version))
    if not tables or not sum(table.num_rows for table in tables):
        return ScoredRows([], [], np.zeros((0, len(class_names)), dtype=np.float32), list(class_names))
    table = pa.concat_tables(tables)
    probabilities = np.stack(
        [table.column(f"{PROBABILITY_PREFIX}{name}").to_numpy().astype(np.float32) for name in class_names], axis=1
    )
    return ScoredRows(
        table.column("path").to_pylist(), table.column("sha256").to_pylist(), probabilities, list(class_names)
    )


def scored_file_index(outputs: DropOutputs) -> dict[str, str]:
    """Every content the drop's outputs hold, by sha256: one of its paths relative to the drop."""
    parts = committed_parts(outputs)
    if not parts:
        return {}
    table = ds.dataset([str(part) for part in parts], format="parquet").to_table(columns=["path", "sha256"])
    return dict(zip(table.column("sha256").to_pylist(), table.column("path").to_pylist(), strict=True))


def last_scored_folder(outputs: DropOutputs) -> Path | None:
    """The drop folder the newest readable scoring report names, or None when no report names one."""
    for report in sorted(outputs.reports.glob("scoring-*.json"), reverse=True):
        try:
            folder = json.loads(report.read_text()).get("drop")
        except (OSError, ValueError, AttributeError):
            continue  # A damaged report is skipped; an older one may still name the folder.
        if folder:
            return Path(folder)
    return None


def scored_drops(predictions_root: Path) -> list[DropOutputs]:
    """The output folders of every drop scored in a home."""
    root = Path(predictions_root)
    if not root.is_dir():
        return []
    return [DropOutputs(folder) for folder in sorted(root.iterdir()) if folder.is_dir()]

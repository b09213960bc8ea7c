"""Committed parts written again from the scoring ledger, when their files are lost or damaged.

The ledger holds every committed row of a drop (drop_files: the file, its content, the model, the
outcome and the part holding the row) and every committed prediction (predictions: the
probabilities, and when the model computed them). So a part whose file is gone (its output folder
was deleted) or damaged (cut short by a crash or by a copy that stopped) is written again under
its own name, row for row, and readers of the drop see every committed row once more. A damaged
file is first renamed into set-aside/ as <part>.damaged-<time>, never deleted. The ledger keeps no
rejection's reason, so each row of a rejection part written again says that instead.

A committed part counts as damaged when its Parquet footer cannot be read, or holds another number
of rows than the ledger committed. Only the footers are read (a few KiB per part), so the check
costs little however many rows a drop holds; damage inside an intact file is not looked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visionflow.errors import DamagedStateError
from visionflow.ledger.ledger import PredictionLedger
from visionflow.ledger.part_tables import PREDICTIONS, predictions_table, rejections_table, write_part
from visionflow.ledger.store import SQLITE, shown

# The reason of each row of a rejection part written again from the ledger.
REBUILT_REJECTION = (
    "rejected by an earlier run; its row was written again from the scoring ledger, which keeps no reason"
)

# A model version's class names in output order, or None when they cannot be found.
ClassNames = Callable[[str], list[str] | None]


@dataclass(frozen=True)
class PartRepair:
    """One committed part whose file was missing or damaged, and what was done about it."""

    part: Path  # Where the part's file belongs.
    rows: int  # Rows written again from the ledger (0 when none could be).
    set_aside: Path | None  # Where the damaged file was moved; None when the file was missing.
    problem: str = ""  # Why its rows could not be written again; empty when they were.

    def warning(self, drop_name: str) -> str:
        """One sentence for the run's log."""
        found = f"drop {drop_name}: committed part {self.part} " + (
            f"was damaged (moved to {self.set_aside})" if self.set_aside else "was missing"
        )
        if self.problem:
            return f"{found}; its rows cannot be written again: {self.problem}"
        return f"{found}; its {self.rows} rows were written again from the scoring ledger"


def part_is_intact(path: Path, rows: int) -> bool:
    """True when the file's Parquet footer reads and counts the rows the ledger committed."""
    try:
        return pq.read_metadata(path).num_rows == rows
    except (OSError, pa.ArrowException):
        return False


def repair_committed_parts(
    drop_name: str, folder: Path, kind: str, set_aside: Path, ledger: PredictionLedger, class_names_of: ClassNames
) -> list[PartRepair]:
    """Write again, from the ledger, every committed part of kind whose file in folder is missing
    or damaged; damaged files go to set_aside first. class_names_of gives the class names of the
    model version whose probabilities a prediction part holds."""
    committed = ledger.part_sizes(drop_name, kind)
    broken = sorted(name for name, rows in committed.items() if not part_is_intact(folder / name, rows))
    if not broken:
        return []
    rows_by_part = ledger.part_rows(drop_name, broken)
    repairs = []
    for name in broken:
        path, rows = folder / name, rows_by_part[name]
        aside = None
        if path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")  # Never the name of an earlier one.
            aside = set_aside / f"{name}.damaged-{stamp}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, aside)
        table, problem = _table(kind, rows, ledger, class_names_of, f"part {path} of drop {drop_name}")
        if table is None:
            repairs.append(PartRepair(path, 0, aside, problem))
            continue
        write_part(table, path, folder.parent)
        if table.num_rows != committed[name]:
            # Rows of an adopted part that an older part already held stay filed under that part, so
            # this one now holds fewer: the ledger counts what the file holds, so it stays intact.
            files = [(file_path, sha256, outcome) for file_path, sha256, _, outcome in rows]
            ledger.commit_part(drop_name, kind, name, files, [], rows[0][2] if rows else "", adopt=True)
        repairs.append(PartRepair(path, table.num_rows, aside))
    return repairs


def _table(
    kind: str, rows: list[tuple[str, str, str, str]], ledger: PredictionLedger, class_names_of: ClassNames, part: str
) -> tuple[pa.Table | None, str]:
    """The part's rows as the table it was written from, or None and why it cannot be made."""
    versions = sorted({version for _, _, version, _ in rows})
    if len(versions) > 1:
        return None, f"the ledger files rows of several models ({', '.join(versions)}) under it"
    version = versions[0] if versions else ""
    if kind != PREDICTIONS:
        rejected = [(path, sha256 or None, None, REBUILT_REJECTION) for path, sha256, _, _ in rows]
        return rejections_table(rejected, version), ""
    paths, sha256s = [row[0] for row in rows], [row[1] for row in rows]
    known = ledger.known_probabilities(sha256s, version)
    missing = sorted(set(sha256s) - set(known))
    if missing:
        sqlite = ledger.url.get_backend_name() == SQLITE
        raise DamagedStateError(
            f"the scoring ledger {ledger.url.database if sqlite else shown(ledger.url)} files {len(missing)} predicted "
            f"rows under {part} but holds no prediction for their contents (e.g. {missing[0]}): it was changed by "
            "hand or damaged; restore it from a backup, or move it aside and run the same command again (it is "
            "then rebuilt from the drops' parts)"
        )
    class_names = class_names_of(version) if rows else []
    width = len(known[sha256s[0]][0]) if rows else 0
    if class_names is None or (rows and len(class_names) != width):
        return None, f"the class names of model {version} ({width} classes) are not in the model registry"
    probabilities = np.stack([known[sha256][0] for sha256 in sha256s]) if rows else np.zeros((0, len(class_names)))
    scored_at = [known[sha256][1] for sha256 in sha256s]
    return predictions_table(paths, sha256s, probabilities, scored_at, class_names, version), ""

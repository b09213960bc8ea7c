"""Labels from a CSV file: one row per label, naming its image by `sha256` or `path`, with a `label`.

The header names the columns (any order; others are ignored): `label` (a class name) and at
least one of `sha256` and `path`; `reviewer` and `labelled_at` are read when present. A relative
path is read from the CSV file's folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

from visionflow.errors import BadInputError
from visionflow.labels.labels_store import LabelRow, Rejection

NAMING_COLUMNS = ("sha256", "path")  # A row names its image by one of these.


def read_csv_labels(file: Path) -> tuple[list[LabelRow], list[Rejection]]:
    """The labels a CSV file offers, and the rows that offer none (each with its reason)."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            _check_header(file, columns)
            reader.fieldnames = columns
            rows, rejected = [], []
            for number, record in enumerate(reader, start=2):  # Row 1 is the header.
                row = _label_row(record, number)
                rows.append(row) if isinstance(row, LabelRow) else rejected.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadInputError(f"cannot read {file} as a CSV file of labels ({error})") from None
    return rows, rejected


def _check_header(file: Path, columns: list[str]) -> None:
    if "label" not in columns or not set(NAMING_COLUMNS) & set(columns):
        raise BadInputError(
            f"{file} has the columns {columns or 'none'}; a labels CSV needs a header with `label` and "
            "`sha256` or `path` (e.g. sha256,label)"
        )


def _label_row(record: dict[str, str | None], number: int) -> LabelRow | Rejection:
    """The row's label, or why it offers none."""
    origin = f"row {number}"
    values = {name: (value or "").strip() for name, value in record.items() if name}
    if not values.get("label"):
        return Rejection(origin=origin, reason="the `label` cell is empty")
    if not values.get("sha256") and not values.get("path"):
        return Rejection(origin=origin, reason="names no image: both `sha256` and `path` are empty")
    return LabelRow(
        sha256=values.get("sha256") or None,
        path=values.get("path") or None,
        class_name=values["label"],
        source="csv",
        reviewer=values.get("reviewer", ""),
        labelled_at=values.get("labelled_at") or None,
        origin=origin,
    )

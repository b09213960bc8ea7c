"""The labels store: every label people gave, with its contract, and a copy of each labelled image.

VISIONFLOW_HOME/labels/labels.sqlite holds two tables: labels (one row per content, class,
source, reviewer and review: the same label imported twice is one row) and contents (each
labelled content's copy under labels/images/<sha256>). This module is the only one that reads or
writes them.

The contract an offered label must meet (import_labels): its class is one of the model's classes;
its content is one visionflow has scored or put in a review set, can still be read, and decodes as
training would decode it. Each voice (a source, reviewer and review) counts with its latest label,
so a labeller who corrects an answer does not disagree with themself. Two voices with different
classes are a conflict: every row stays stored (nothing a person said is lost), the content is
held out of training, and `visionflow labels list --conflicts` shows it until a resolution
(`visionflow labels resolve`) settles it; a voice that disagrees after the resolution reopens it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from visionflow.atomic import atomic_path
from visionflow.events import LABELS_ADDED, LABELS_RESOURCE_PREFIX, emit
from visionflow.home import HomeLayout
from visionflow.images.imaging import ImageSpec
from visionflow.labels.contents import ContentFinder, LabelRejected, check_decodes
from visionflow.labels.review_sets import NOT_SURE, now_utc

STORE_FILE = "labels.sqlite"
IMAGES_FOLDER = "images"
BUSY_TIMEOUT_SECONDS = 60.0  # How long a writer waits for another import to finish, in seconds.

# Where a label came from; a "resolution" settles a conflict: the latest one decides the content's class.
LabelSource = Literal["review", "label-studio", "csv", "resolution"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS labels (
        label_key TEXT PRIMARY KEY, sha256 TEXT NOT NULL, class_name TEXT NOT NULL, source TEXT NOT NULL,
        reviewer TEXT NOT NULL, review_id TEXT NOT NULL, labelled_at TEXT NOT NULL, imported_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS labels_by_content ON labels (sha256)",
    "CREATE TABLE IF NOT EXISTS contents (sha256 TEXT PRIMARY KEY, image_file TEXT NOT NULL, bytes INTEGER NOT NULL)",
)


class LabelRow(BaseModel):
    """One label as an import offers it, before the contract has judged it."""

    sha256: str | None = None  # The content's digest; None when the row names a file instead.
    path: str | None = None  # A file holding the content (absolute, or relative to the import file's folder).
    class_name: str  # The class the labeller chose.
    source: LabelSource  # Where it came from.
    reviewer: str = ""  # Who labelled it (a name, an e-mail or a Label Studio user id).
    review_id: str = ""  # The review it answers, when it answers one.
    labelled_at: str | None = None  # When it was labelled, ISO 8601; None means now.
    origin: str  # Where it is in its input, for messages: "row 3", "task 12", "page 2 item 5".


class Rejection(BaseModel):
    """A row an import did not take, and why."""

    origin: str  # Where it is in its input.
    reason: str  # Why it was not taken, in words a person can act on.


class StoredLabel(BaseModel):
    """One label row of the store."""

    sha256: str  # The labelled content.
    class_name: str  # The class given.
    source: LabelSource  # Where it came from.
    reviewer: str  # Who gave it.
    review_id: str  # The review it answered, or "".
    labelled_at: str  # When it was given, ISO 8601.


class LabelsSnapshot(BaseModel):
    """The accepted labels at one moment: what a model trained with labels learnt from."""

    count: int  # Contents with exactly one class among their labels: the ones training takes.
    digest: str  # sha256 over every (content, class) pair taken, sorted: names the snapshot.
    conflicts: int  # Contents with two or more different classes, held out of training.


class LabelledContent(BaseModel):
    """One content training takes: its class and the stored copy of its bytes."""

    sha256: str  # The content's digest.
    class_name: str  # Its one agreed class.
    image_file: str  # Absolute path of the stored copy of its bytes.


class ImportReport(BaseModel):
    """What one import did."""

    rows: int  # Rows offered.
    accepted: int  # Rows stored as new labels.
    already_stored: int  # Rows the store held already (an import of the same file again adds nothing).
    not_labels: int  # Answers that name no class ("not sure / none of these"): kept in the review, not labels.
    rejected: list[Rejection]  # Rows not taken, each with its reason.
    conflicts: list[str]  # Contents this import's rows touch that now have two different classes.
    snapshot: LabelsSnapshot  # The store's accepted labels after the import.


class LabelsListing(BaseModel):
    """What `visionflow labels list` shows: the snapshot and the labels asked for."""

    snapshot: LabelsSnapshot  # The accepted labels now.
    conflicting: list[str]  # Contents with conflicting labels, by sha256.
    labels: list[StoredLabel]  # The labels listed: all, or those of the conflicting contents.


class LabelsStore:
    """The labels store of one home; use as a context manager."""

    def __init__(self, layout: HomeLayout) -> None:
        self.root = layout.labels
        self.root.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.root / STORE_FILE, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        with self._transaction() as connection:
            for statement in SCHEMA:
                connection.execute(statement)

    def __enter__(self) -> LabelsStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time (BEGIN IMMEDIATE); rolled back whole on any error."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def has_content(self, sha256: str) -> bool:
        """Whether a copy of this content is stored."""
        return self._connection.execute("SELECT 1 FROM contents WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def keep_content(self, sha256: str, data: bytes) -> None:
        """Store a copy of a content's bytes (once; the file is in place before its row)."""
        if self.has_content(sha256):
            return
        image_file = Path(IMAGES_FOLDER) / sha256
        with atomic_path(self.root / image_file, durable=True) as temporary:
            temporary.write_bytes(data)
        with self._transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO contents VALUES (?, ?, ?)", (sha256, str(image_file), len(data)))

    def add(self, sha256: str, row: LabelRow) -> bool:
        """Store one label whose content is kept; False when the store holds this very label already."""
        identity = "\0".join((sha256, row.class_name, row.source, row.reviewer, row.review_id))
        key = hashlib.sha256(identity.encode()).hexdigest()
        # A resolution given again moves to now, so that the latest resolution is the one that decides;
        # its time is kept to the microsecond, so two resolutions in one second still come in order.
        labelled_at = row.labelled_at or (datetime.now(UTC).isoformat() if row.source == "resolution" else now_utc())
        on_conflict = "DO UPDATE SET labelled_at = excluded.labelled_at" if row.source == "resolution" else "DO NOTHING"
        with self._transaction() as connection:
            inserted = connection.execute(
                f"INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (label_key) {on_conflict}",
                (key, sha256, row.class_name, row.source, row.reviewer, row.review_id, labelled_at, now_utc()),
            )  # fmt: skip
            return inserted.rowcount == 1

    def labels(self, sha256s: Iterable[str] | None = None) -> list[StoredLabel]:
        """Every stored label (or those of some contents), by content then time."""
        query = "SELECT sha256, class_name, source, reviewer, review_id, labelled_at FROM labels"
        rows = self._connection.execute(f"{query} ORDER BY sha256, labelled_at, rowid").fetchall()
        wanted, fields = None if sha256s is None else set(sha256s), StoredLabel.model_fields
        return [
            StoredLabel(**dict(zip(fields, row, strict=True))) for row in rows if wanted is None or row[0] in wanted
        ]

    def agreed_classes(self) -> dict[str, str | None]:
        """Each labelled content's class, None for a conflict: the latest resolution's unless a voice
        disagrees after it, else the one class the voices' latest labels agree on."""
        by_content: dict[str, list[StoredLabel]] = {}
        for label in self.labels():
            by_content.setdefault(label.sha256, []).append(label)
        return {sha256: _agreed_class(rows) for sha256, rows in by_content.items()}

    def contents_matching(self, prefix: str) -> list[str]:
        """The labelled contents whose sha256 starts with prefix (as `labels list` shows 12 digits)."""
        rows = self._connection.execute("SELECT DISTINCT sha256 FROM labels WHERE substr(sha256, 1, ?) = ?",
                                        (len(prefix), prefix.lower())).fetchall()  # fmt: skip
        return sorted(row[0] for row in rows)

    def conflicts(self) -> dict[str, list[StoredLabel]]:
        """Contents with two or more different classes among their labels and no resolution, with those labels."""
        unsettled = {sha256 for sha256, class_name in self.agreed_classes().items() if class_name is None}
        conflicting: dict[str, list[StoredLabel]] = {}
        for label in self.labels(unsettled):
            conflicting.setdefault(label.sha256, []).append(label)
        return conflicting

    def snapshot(self) -> LabelsSnapshot:
        """The accepted labels now: their count, their digest and the contents held out."""
        return self.accepted()[1]

    def accepted(self) -> tuple[list[LabelledContent], LabelsSnapshot]:
        """The contents training takes (an agreed or resolved class, a stored copy; by sha256) and their
        snapshot, read in one transaction: an import meanwhile cannot make them name different labels."""
        self._connection.execute("BEGIN")
        try:
            agreed = self.agreed_classes()
            files = dict(self._connection.execute("SELECT sha256, image_file FROM contents").fetchall())
        finally:
            self._connection.execute("COMMIT")
        taken = [
            LabelledContent(sha256=sha256, class_name=class_name, image_file=str(self.root / files[sha256]))
            for sha256, class_name in sorted(agreed.items())
            if class_name is not None and sha256 in files
        ]
        digest = hashlib.sha256("".join(f"{item.sha256}\0{item.class_name}\n" for item in taken).encode())
        conflicts = sum(class_name is None for class_name in agreed.values())
        return taken, LabelsSnapshot(count=len(taken), digest=digest.hexdigest(), conflicts=conflicts)


def _agreed_class(rows: list[StoredLabel]) -> str | None:
    """One content's class from its labels (oldest first), or None when they conflict."""
    latest: dict[tuple[str, str, str], StoredLabel] = {}
    for row in rows:
        if row.source != "resolution":
            latest[(row.source, row.reviewer, row.review_id)] = row
    resolutions = [row for row in rows if row.source == "resolution"]
    if resolutions:
        decided = resolutions[-1]
        disagree = any(row.labelled_at > decided.labelled_at and row.class_name != decided.class_name
                       for row in latest.values())  # fmt: skip
        return None if disagree else decided.class_name
    classes = {row.class_name for row in latest.values()}
    return classes.pop() if len(classes) == 1 else None


def import_labels(layout: HomeLayout, rows: list[LabelRow], classes: list[str], spec: ImageSpec,
                  base: Path | None = None) -> ImportReport:  # fmt: skip
    """Judge each offered row by the contract and store those that meet it.

    classes are the model's classes (what a label may be); spec is the model's input (the image
    must decode into it); base is the folder relative paths in the rows are read from.
    """
    finder = ContentFinder(layout)
    accepted = already = not_labels = 0
    rejected: list[Rejection] = []
    touched: set[str] = set()
    with LabelsStore(layout) as store:
        for row in rows:
            if row.class_name == NOT_SURE:
                not_labels += 1
                continue
            try:
                sha256 = _checked_content(store, finder, row, classes, spec, base)
            except LabelRejected as reason:
                rejected.append(Rejection(origin=row.origin, reason=str(reason)))
                continue
            touched.add(sha256)
            added = store.add(sha256, row)
            accepted, already = accepted + added, already + (not added)
        conflicts = sorted(touched & set(store.conflicts()))
        snapshot = store.snapshot()
    if accepted:  # An automation may retrain once enough labels arrived (deployments/automations.py).
        payload = {
            "added": accepted,
            "labels": snapshot.count,
            "conflicts": snapshot.conflicts,
            "digest": snapshot.digest,
        }
        emit(LABELS_ADDED, LABELS_RESOURCE_PREFIX, layout.root.name, payload, outside_runs=True)
    return ImportReport(rows=len(rows), accepted=accepted, already_stored=already, not_labels=not_labels,
                        rejected=rejected, conflicts=conflicts, snapshot=snapshot)  # fmt: skip


def _checked_content(store: LabelsStore, finder: ContentFinder, row: LabelRow, classes: list[str], spec: ImageSpec,
                     base: Path | None) -> str:  # fmt: skip
    """The row's content digest, once its class and content meet the contract and a copy is kept."""
    if row.class_name not in classes:
        raise LabelRejected(f"class {row.class_name!r} is not one of the model's classes ({', '.join(classes)})")
    if row.sha256 is not None and store.has_content(row.sha256):
        return row.sha256  # Its bytes are kept already, wherever its file went since.
    try:
        sha256, data = finder.read(row.sha256, row.path, base)
    except LabelRejected:
        if row.sha256 is None or not row.path:
            raise
        sha256, data = finder.read(row.sha256, None)  # The file moved (a drop from inbox to done).
    if not store.has_content(sha256):
        check_decodes(data, spec)
        store.keep_content(sha256, data)
    return sha256

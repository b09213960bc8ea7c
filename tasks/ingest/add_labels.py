"""Retraining with reviewed labels: a base dataset plus every accepted label, as a dataset of its own.

`visionflow train --with-labels` trains on the derived dataset this stage builds beside its base,
VISIONFLOW_HOME/datasets/<source>+labels-<fingerprint12>/, from the base's split files and the labels
store's snapshot (visionflow/labels/labels_store.py):
- train: the base's train rows, plus one row per labelled content the base does not hold (path
  "labels/<sha256>", decoded as the base's images were); a content the base's train split holds keeps
  its row, with the reviewed label in place of its folder's (a person looked at the image itself);
- val and test: the base's rows unchanged, so a model trained with labels is measured on the very
  images the champion was, and the gate's comparison stays fair.
Left out, each counted: a labelled content in the base's val or test split (training on it would leak
the answers the model is judged by), a label of a class the dataset lacks, and a stored copy that no
longer reads or decodes. The fingerprint joins the base's with the snapshot's digest: the same base and
labels make the same dataset, built once and then reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ValidationError

from visionflow.atomic import atomic_path
from visionflow.errors import BadInputError
from visionflow.home import resolve_home
from visionflow.images.imaging import ImageRejected, ImageSpec, decode_image
from visionflow.images.splits import (
    DATASET_RECORD_NAME,
    DatasetMetadata,
    DatasetRecord,
    read_split_metadata,
    split_file,
    split_schema,
)
from visionflow.labels.labels_store import LabelledContent, LabelsSnapshot, LabelsStore
from visionflow.run_context import run_logger
from visionflow.tasks.ingest.assign_splits import write_manifest
from visionflow.tasks.ingest.decode_images import SHARD_BYTES
from visionflow.tasks.ingest.record_dataset import dataset_summary, write_dataset_record
from visionflow.tasks.ingest.scan_files import STATUS_OK, STATUS_QUARANTINED
from visionflow.tasks.ingest.validate_parquet import PROCESSED_SUITE, accepted_rows_per_split, validate_split_files
from visionflow.tasks.ingest.write_parquet import ParquetConfig

# Bump when the rule deciding which labelled contents go where changes, so no old derived dataset is reused.
LABELS_RULE_VERSION = 1
LABELLED_PATH_PREFIX = "labels/"  # A labelled image's path in the split files: "labels/<sha256>".


class LabelsUse(BaseModel):
    """What a labels snapshot did to a base dataset (the derived dataset.json and the train summary hold it)."""

    snapshot: LabelsSnapshot  # The accepted labels taken: their count, digest and held-out conflicts.
    base_fingerprint: str  # The dataset the labels were added to.
    added_to_train: int  # Labelled images added to the train split as rows of their own.
    relabelled: int  # Base train images whose folder label the reviewed label replaced.
    confirmed: int  # Base train images whose reviewed label agrees with their folder's.
    left_out_in_val_or_test: int  # In the base's val or test split: not trained on, so the test stays unseen.
    left_out_unknown_class: int  # Of a class the dataset does not have.
    left_out_undecodable: int  # Stored copies that no longer read, match their sha256, or decode.


class LabelledDatasetRecord(DatasetRecord):
    """dataset.json of a derived dataset: the usual record, and what the labels did."""

    labels: LabelsUse  # The snapshot taken and where its labels went.


@dataclass
class LabelsPlan:
    """Where each labelled content goes, decided from the base's manifest before any pixel is read."""

    added: list[LabelledContent] = field(default_factory=list)  # New contents, for train rows of their own.
    relabelled: dict[str, int] = field(default_factory=dict)  # Base train content -> the reviewed label's index.
    confirmed: list[str] = field(default_factory=list)  # Base train contents whose label the review confirmed.
    in_val_or_test: dict[str, str] = field(default_factory=dict)  # Content -> the base split holding it.
    unknown_class: list[LabelledContent] = field(default_factory=list)  # Labels of classes the dataset lacks.


def labelled_fingerprint(base_fingerprint: str, labels_digest: str) -> str:
    """The derived dataset's fingerprint: the base's, the snapshot's digest and the rule that joins them."""
    return hashlib.sha256(f"{base_fingerprint}\0{labels_digest}\0rule {LABELS_RULE_VERSION}".encode()).hexdigest()


def plan_labels(manifest: pd.DataFrame, classes: list[str], contents: list[LabelledContent]) -> LabelsPlan:
    """Decide where each labelled content goes, from the base's manifest (one row per file, with its split)."""
    usable = manifest[(manifest["status"] == STATUS_OK) & manifest["split"].notna()]
    split_of = dict(zip(usable["sha256"], usable["split"], strict=True))
    train = usable[(usable["split"] == "train") & usable["label"].notna()]
    folder_label = dict(zip(train["sha256"], train["label"].astype("int64"), strict=True))
    plan = LabelsPlan()
    for content in contents:
        if content.class_name not in classes:
            plan.unknown_class.append(content)
        elif split_of.get(content.sha256) in ("val", "test"):
            plan.in_val_or_test[content.sha256] = split_of[content.sha256]
        elif content.sha256 in folder_label:
            label = classes.index(content.class_name)
            if folder_label[content.sha256] == label:
                plan.confirmed.append(content.sha256)
            else:
                plan.relabelled[content.sha256] = label
        else:
            plan.added.append(content)
    return plan


def read_labelled_image(content: LabelledContent, spec: ImageSpec) -> bytes:
    """The pixels of a labelled content's stored copy. Raises ImageRejected with the reason."""
    try:
        data = Path(content.image_file).read_bytes()
    except OSError as error:
        raise ImageRejected(f"its stored copy {content.image_file} cannot be read ({error.strerror})") from None
    if hashlib.sha256(data).hexdigest() != content.sha256:
        raise ImageRejected(f"its stored copy {content.image_file} does not match its sha256: it is damaged")
    return decode_image(data, spec).pixels


def labelled_tables(
    plan: LabelsPlan, classes: list[str], spec: ImageSpec, schema: pa.Schema, rows: int, failures: dict[str, str]
) -> Iterator[pa.Table]:
    """Train rows of the added contents, `rows` at a time; a content that cannot become pixels goes to failures."""
    for start in range(0, len(plan.added), rows):
        chunk, pixels = [], []
        for content in plan.added[start : start + rows]:
            try:
                pixels.append(read_labelled_image(content, spec))
            except ImageRejected as reason:
                failures[content.sha256] = str(reason)
                continue
            chunk.append(content)
        if chunk:
            columns = {
                "pixels": pa.array(pixels, type=pa.binary(spec.pixel_bytes)),
                "label": pa.array([classes.index(content.class_name) for content in chunk], type=pa.int32()),
                "path": pa.array([f"{LABELLED_PATH_PREFIX}{content.sha256}" for content in chunk], type=pa.string()),
                "sha256": pa.array([content.sha256 for content in chunk], type=pa.string()),
            }
            yield pa.table(columns, schema=schema)


def relabelled_table(batch: pa.RecordBatch, relabelled: dict[str, int], schema: pa.Schema) -> pa.Table:
    """A batch of base rows under the derived dataset's schema, with reviewed labels in place of folder ones."""
    labels = batch.column("label")
    if relabelled:
        pairs = zip(batch.column("sha256").to_pylist(), labels.to_pylist(), strict=True)
        labels = pa.array([relabelled.get(digest, label) for digest, label in pairs])
    columns = [batch.column("pixels"), labels.cast(pa.int32()), batch.column("path"), batch.column("sha256")]
    return pa.Table.from_arrays(columns, schema=schema)


def write_labelled_splits(
    base: DatasetRecord, plan: LabelsPlan, metadata: DatasetMetadata, output_dir: Path, config: ParquetConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """Write the derived split files, streamed from the base's at most SHARD_BYTES of pixels at a time; return
    ({split: path}, {content whose image could not be used: reason}). Files are renamed into place together."""
    spec, failures = ImageSpec(*base.image_shape), {}
    rows = max(1, min(config.row_group_rows, SHARD_BYTES // spec.pixel_bytes))  # Rows held at once.
    final_paths = {split: split_file(output_dir, split) for split in base.parquet}
    with ExitStack() as renames:
        temporaries = {split: renames.enter_context(atomic_path(path)) for split, path in final_paths.items()}
        for split, temporary in temporaries.items():
            schema = split_schema(spec, metadata, split)
            relabelled = plan.relabelled if split == "train" else {}
            with pq.ParquetWriter(temporary, schema, compression=config.compression) as writer:
                for batch in pq.ParquetFile(base.parquet[split]).iter_batches(batch_size=rows):
                    writer.write_table(relabelled_table(batch, relabelled, schema))
                if split == "train":
                    for table in labelled_tables(plan, metadata.classes, spec, schema, rows, failures):
                        writer.write_table(table)
    return {split: str(path) for split, path in final_paths.items()}, failures


def labelled_manifest(
    base_manifest: pd.DataFrame, plan: LabelsPlan, classes: list[str], failures: dict[str, str]
) -> pd.DataFrame:
    """The derived manifest: the base's rows (relabelled where a review said so) and one row per labelled
    content the base did not train on, with its fate; `labelled` marks the rows whose label a person gave."""
    manifest = base_manifest.copy()
    manifest["labelled"] = False
    in_train = (manifest["split"] == "train") & manifest["sha256"].isin(set(plan.relabelled) | set(plan.confirmed))
    manifest.loc[in_train, "labelled"] = True
    for digest, label in plan.relabelled.items():
        rows = in_train & (manifest["sha256"] == digest)
        manifest.loc[rows, "label"], manifest.loc[rows, "class_name"] = label, classes[label]
    outside = [(content, failures.get(content.sha256)) for content in plan.added]
    outside += [(content, f"class {content.class_name!r} is not one of the dataset's classes") for content in
                plan.unknown_class]  # fmt: skip
    if not outside:
        return manifest
    extra = pd.DataFrame(
        [{"path": f"{LABELLED_PATH_PREFIX}{content.sha256}", "sha256": content.sha256, "class_name": content.class_name,
          "status": STATUS_QUARANTINED if reason else STATUS_OK, "reason": reason, "split": None if reason else "train",
          "label": None if reason else classes.index(content.class_name), "labelled": True}
         for content, reason in outside]
    )  # fmt: skip
    extra["label"] = extra["label"].astype("Int64")
    return pd.concat([manifest, extra], ignore_index=True)


def existing_record(dataset_dir: Path) -> LabelledDatasetRecord | None:
    """The record of a derived dataset built before, when its folder holds a readable one."""
    try:
        return LabelledDatasetRecord.model_validate_json((dataset_dir / DATASET_RECORD_NAME).read_text())
    except (OSError, ValueError, ValidationError):
        return None


def add_labels(
    base: DatasetRecord,
    contents: list[LabelledContent],
    snapshot: LabelsSnapshot,
    config: ParquetConfig | None = None,
    data_docs: Path | None = None,
) -> LabelledDatasetRecord:
    """Build (or reuse) the derived dataset of base plus the labelled contents; return its record.

    data_docs is where the processed contract's Data Docs go (the home's root), None for none."""
    if not contents:
        raise BadInputError("no accepted labels to train with: import some with `visionflow labels import`")
    base_metadata = read_split_metadata(base.parquet["train"])
    fingerprint = labelled_fingerprint(base.dataset_fingerprint, snapshot.digest)
    source = f"{base_metadata.source or Path(base.dataset_dir).name}+labels"
    dataset_dir = Path(base.dataset_dir).parent / f"{source}-{fingerprint[:12]}"
    if (built := existing_record(dataset_dir)) is not None:
        return built
    base_manifest = pd.read_parquet(base.manifest)
    plan = plan_labels(base_manifest, base.classes, contents)
    metadata = base_metadata.model_copy(update={"dataset_fingerprint": fingerprint, "source": source})
    paths, failures = write_labelled_splits(base, plan, metadata, dataset_dir, config or ParquetConfig())
    manifest = labelled_manifest(base_manifest, plan, base.classes, failures)
    write_manifest(manifest, dataset_dir / "manifest.parquet")
    expected, pixel_bytes = accepted_rows_per_split(manifest), ImageSpec(*base.image_shape).pixel_bytes
    reports = validate_split_files(paths, expected, len(base.classes), pixel_bytes, data_docs)
    record = dataset_summary(manifest, base.classes, fingerprint, base.image_shape, paths, reports, dataset_dir)
    # The raw-manifest contract judged the base's files, which the derived dataset keeps; it is carried over.
    inherited = {suite: outcome for suite, outcome in base.contracts.items() if suite != PROCESSED_SUITE}
    record.contracts = {**inherited, **record.contracts}
    use = LabelsUse(
        snapshot=snapshot, base_fingerprint=base.dataset_fingerprint, relabelled=len(plan.relabelled),
        added_to_train=len(plan.added) - len(failures), confirmed=len(plan.confirmed),
        left_out_in_val_or_test=len(plan.in_val_or_test), left_out_unknown_class=len(plan.unknown_class),
        left_out_undecodable=len(failures),
    )  # fmt: skip
    labelled = LabelledDatasetRecord(**record.model_dump(), labels=use)
    write_dataset_record(labelled, dataset_dir)
    return labelled


def read_labels(home: str | None) -> tuple[list[LabelledContent], LabelsSnapshot]:
    """The accepted labels of a home's store, and their snapshot, read at one moment. Raises
    BadInputError when the store has none: asking to train with labels then is a mistake."""
    layout = resolve_home(home)
    with LabelsStore(layout) as store:
        contents, snapshot = store.accepted()
    if not contents:
        held_out = f" ({snapshot.conflicts} held out for conflicting classes)" if snapshot.conflicts else ""
        raise BadInputError(
            f"no accepted labels in {layout.labels}{held_out}; import some with `visionflow labels import`, "
            "or train without --with-labels"
        )
    return contents, snapshot


@task(name="read-labels", cache_policy=NO_CACHE)
def read_labels_task(home: str | None) -> tuple[list[LabelledContent], LabelsSnapshot]:
    """Prefect task: the accepted labels of the home's store and their snapshot; none is a BadInputError."""
    contents, snapshot = read_labels(home)
    run_logger(__name__).info("labels snapshot %s: %d labelled images, %d contents held out for conflicts",
                              snapshot.digest[:12], snapshot.count, snapshot.conflicts)  # fmt: skip
    return contents, snapshot


@task(name="add-labels", cache_policy=NO_CACHE)
def add_labels_task(
    base: DatasetRecord, contents: list[LabelledContent], snapshot: LabelsSnapshot, data_docs: Path | None = None
) -> LabelledDatasetRecord:
    """Prefect task: the base dataset plus the labelled contents, as a dataset of its own (built once)."""
    log = run_logger(__name__)
    record = add_labels(base, contents, snapshot, data_docs=data_docs)
    use = record.labels
    log.info("dataset %s: %s with %d labelled images added to train, %d relabelled, %d confirmed, %d in val or "
             "test left out (no leakage)", record.dataset_fingerprint[:12], use.base_fingerprint[:12],
             use.added_to_train, use.relabelled, use.confirmed, use.left_out_in_val_or_test)  # fmt: skip
    if use.left_out_unknown_class or use.left_out_undecodable:
        log.warning("left out %d labels of classes the dataset lacks and %d images that no longer decode; "
                    "%s names each with its reason", use.left_out_unknown_class, use.left_out_undecodable,
                    record.manifest)  # fmt: skip
    return record

"""Stage 3 of ingestion: decide each image's split and label, and measure what the contracts check.

Splits the source does not provide are carved by a deterministic, stratified, content-hash
rule: within each class, distinct image contents are ordered by a salted sha256 and the first
fractions go to test and val. The same files always land in the same split, adding files moves
few others, and identical copies of an image can never straddle two splits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, model_validator

from visionflow.atomic import atomic_path
from visionflow.errors import BadInputError
from visionflow.run_context import run_logger
from visionflow.tasks.ingest.decode_images import read_decoded_manifest
from visionflow.tasks.ingest.scan_files import STATUS_OK


class SplitConfig(BaseModel):
    """How stage 3 carves the splits a source does not provide."""

    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)  # Share of train held out for validation.
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)  # Share held out for test, flat layouts only.
    salt: str = "visionflow"  # Mixed into the ordering hash; change it to draw different splits.
    # Every usable image goes to the test split, whatever the folder's layout: the folder is an
    # evaluation set for a trained model (`visionflow evaluate`), not training data.
    evaluation_only: bool = False

    @model_validator(mode="after")
    def _leaves_some_training_data(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction ({self.val_fraction}) + test_fraction ({self.test_fraction}) must be below 1, "
                "or nothing is left to train on"
            )
        return self


def discover_classes(manifest: pd.DataFrame, every_split: bool = False) -> list[str]:
    """Class names, sorted: from the source's train split when it has one (unless every_split),
    else from every folder."""
    usable = manifest[manifest["status"] == STATUS_OK]
    if not every_split and (usable["source_split"] == "train").any():
        usable = usable[usable["source_split"] == "train"]
    return sorted(usable["class_name"].dropna().unique().tolist())


def assign_splits(manifest: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, list[str]]:
    """Return the manifest with split, label and the contract columns, plus the class names.

    Added columns: split (train/val/test, null for quarantined rows), label (class index, null
    when the class is not a training class), class_count and class_balance (images of the
    row's class in its split, and that count over the largest class's), classes_missing_from_split
    (training classes with no image in the row's split, comma-separated), duplicate_in_split
    (the same content appears again in the same split) and in_other_split (the same content
    appears in another split: leakage).
    """
    classes = discover_classes(manifest, every_split=config.evaluation_only)
    if config.evaluation_only:
        return _evaluation_set(manifest, classes)
    if not classes and len(manifest):
        example = manifest.iloc[0]
        raise BadInputError(
            f"none of the {len(manifest)} files is a usable image (e.g. {example['path']}: {example['reason']}); "
            "a dataset needs image files (JPEG, PNG, ...) in <class>/<images> folders"
        )
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise BadInputError(
            f"a dataset needs at least two classes with usable images, found {found}: "
            "lay images out as <class>/<images> with one folder per class"
        )
    assigned = manifest.copy()
    assigned["split"] = _splits_for(assigned, config)
    if not (assigned["split"] == "train").any():
        raise BadInputError("no usable images are left for the train split; check the train folder and the fractions")
    class_index = {name: index for index, name in enumerate(classes)}
    assigned["label"] = assigned["class_name"].map(class_index).astype("Int64")
    assigned.loc[assigned["status"] != STATUS_OK, "label"] = pd.NA
    return _add_contract_columns(assigned, classes), classes


def _evaluation_set(manifest: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Every usable image in the test split, labelled by the folder's classes."""
    if not classes:
        raise BadInputError("no usable images to evaluate on: lay images out as <class>/<images>")
    assigned = manifest.copy()
    assigned["split"] = pd.Series(pd.NA, index=assigned.index, dtype="object")
    assigned.loc[assigned["status"] == STATUS_OK, "split"] = "test"
    assigned["label"] = assigned["class_name"].map({name: index for index, name in enumerate(classes)}).astype("Int64")
    assigned.loc[assigned["status"] != STATUS_OK, "label"] = pd.NA
    return _add_contract_columns(assigned, classes), classes


def _splits_for(manifest: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """The split of every row: kept from the source where given, carved by hash where not."""
    usable = manifest["status"] == STATUS_OK
    splits = pd.Series(pd.NA, index=manifest.index, dtype="object")
    source = manifest["source_split"]
    has_source_split = source.notna() & usable
    splits[has_source_split] = source[has_source_split]
    source_has_val = (source[usable] == "val").any()
    source_has_test = (source[usable] == "test").any()
    carve_from = usable & (source == "train") if has_source_split.any() else usable
    test_fraction = 0.0 if source_has_test else config.test_fraction
    val_fraction = 0.0 if source_has_val else config.val_fraction
    carved = _carve(manifest[carve_from], test_fraction, val_fraction, config.salt)
    splits[carved.index] = carved
    return splits


def _carve(rows: pd.DataFrame, test_fraction: float, val_fraction: float, salt: str) -> pd.Series:
    """Stratified hash split of rows into train/val/test, grouping identical contents together."""
    result = pd.Series("train", index=rows.index, dtype="object")
    for _, class_rows in rows.groupby("class_name", sort=True):
        contents = sorted(class_rows["sha256"].unique(), key=lambda digest: _order_key(digest, salt))
        test_count = round(len(contents) * test_fraction)
        val_count = round(len(contents) * val_fraction)
        content_split = {digest: "test" for digest in contents[:test_count]}
        content_split.update({digest: "val" for digest in contents[test_count : test_count + val_count]})
        result[class_rows.index] = [content_split.get(digest, "train") for digest in class_rows["sha256"]]
    return result


def _order_key(digest: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{digest}".encode()).hexdigest()


def _add_contract_columns(assigned: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Counts and flags the raw-manifest contract checks row by row."""
    usable = assigned[assigned["status"] == STATUS_OK]
    # A class with no image in a split has no row of its own to fail a check, so every row of
    # the split carries the names of the training classes the split lacks.
    present = usable.groupby("split")["class_name"].agg(lambda names: set(names))
    missing = {split: ",".join(sorted(set(classes) - names)) for split, names in present.items()}
    assigned["classes_missing_from_split"] = (
        assigned["split"].map(missing).astype("str").where(assigned["status"] == STATUS_OK)
    )
    counts = usable.groupby(["split", "class_name"]).size().rename("class_count")
    largest = counts.groupby(level="split").transform("max")
    balance = (counts / largest).rename("class_balance")
    keys = pd.MultiIndex.from_frame(assigned[["split", "class_name"]].astype("object"))
    assigned["class_count"] = pd.array(counts.reindex(keys).to_numpy(), dtype="Int64")
    assigned["class_balance"] = pd.array(balance.reindex(keys).to_numpy(), dtype="Float64")
    splits_per_content = usable.groupby("sha256")["split"].nunique()
    copies_in_split = usable.groupby(["split", "sha256"]).size()
    content_keys = pd.MultiIndex.from_frame(assigned[["split", "sha256"]].astype("object"))
    in_other_split = assigned["sha256"].map(splits_per_content).gt(1)
    copies = pd.Series(copies_in_split.reindex(content_keys).to_numpy(), index=assigned.index)
    not_usable = assigned["status"] != STATUS_OK
    assigned["in_other_split"] = in_other_split.astype("boolean").mask(not_usable)
    assigned["duplicate_in_split"] = copies.gt(1).astype("boolean").mask(not_usable)
    return assigned


def relabel(decoded: pd.DataFrame, scanned: pd.DataFrame) -> pd.DataFrame:
    """The decoded manifest with classes and source splits taken from this run's scan.

    A decode reused from the cache was made for the same paths and contents, but the folder
    layout may have changed since (a test folder added, a class renamed); labels come from now.
    """
    if decoded["path"].tolist() != scanned["path"].tolist():
        raise ValueError("the decoded manifest does not list the scanned files; delete the decode cache folder")
    relabelled = decoded.copy()
    relabelled["class_name"] = scanned["class_name"].to_numpy()
    relabelled["source_split"] = scanned["source_split"].to_numpy()
    return relabelled


def dataset_fingerprint(decode_dir: Path, manifest: pd.DataFrame, config: SplitConfig) -> str:
    """The dataset's fingerprint: its decode key (content and pixel settings), every file's class
    and source split, and the split rule."""
    digest = hashlib.sha256(f"{Path(decode_dir).name}:{config.model_dump_json()}".encode())
    for path, class_name, source_split in zip(
        manifest["path"], manifest["class_name"], manifest["source_split"], strict=True
    ):
        digest.update(f"{path}\0{class_name}\0{source_split}\n".encode())
    return digest.hexdigest()


def write_manifest(manifest: pd.DataFrame, path: Path) -> None:
    """Save the manifest as Parquet, atomically, so every file's fate can be looked up later."""
    with atomic_path(path) as temporary:
        manifest.to_parquet(temporary, index=False)


@dataclass
class SplitManifest:
    """The outcome of stage 3: the full manifest and what later stages key on."""

    manifest: pd.DataFrame  # One row per file found, with split, label and contract columns.
    classes: list[str]  # Class names; a label is an index into this list.
    fingerprint: str  # The dataset fingerprint (content, pixel settings and split rule).
    dataset_dir: Path  # Where this dataset's Parquet, manifest and reports are written.


@task(name="assign-splits", cache_policy=NO_CACHE)
def assign_splits_task(
    scanned: pd.DataFrame, decode_dir: str, config: SplitConfig, datasets_root: Path, source_name: str
) -> SplitManifest:
    """Prefect task: assign splits and labels, fingerprint the dataset, save the manifest beside it."""
    log = run_logger(__name__)
    manifest = relabel(read_decoded_manifest(Path(decode_dir)), scanned)
    fingerprint = dataset_fingerprint(Path(decode_dir), manifest, config)
    dataset_dir = Path(datasets_root) / f"{source_name}-{fingerprint[:12]}"
    dataset_dir.mkdir(parents=True, exist_ok=True)
    # Saved before assigning too, so a dataset refused below still leaves its manifest to inspect.
    write_manifest(manifest, dataset_dir / "manifest.parquet")
    assigned, classes = assign_splits(manifest, config)
    write_manifest(assigned, dataset_dir / "manifest.parquet")
    dropped = sorted(set(manifest["class_name"].dropna()) - set(classes))
    if dropped:
        log.warning("class folders with no usable training image, left out: %s", ", ".join(dropped))
    counts = assigned["split"].value_counts().to_dict()
    log.info("%d classes; images per split: %s", len(classes), ", ".join(f"{k} {v}" for k, v in counts.items()))
    return SplitManifest(assigned, classes, fingerprint, dataset_dir)

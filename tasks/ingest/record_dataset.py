"""Stage 7 of ingestion: record what was built, for people (artifacts) and for later stages (JSON).

dataset.json beside the Parquet files is how training finds a dataset: its classes, image
shape, fingerprint, split files and row counts, and the contract outcome.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.atomic import write_json_atomically
from visionflow.data_contracts.contract_suites import ContractReport
from visionflow.images.splits import DATASET_RECORD_NAME, DatasetRecord
from visionflow.run_context import publish_table
from visionflow.tasks.ingest.scan_files import STATUS_OK

# How many quarantined files the summary names; the manifest lists them all.
QUARANTINE_EXAMPLES = 20


def dataset_summary(
    manifest: pd.DataFrame,
    classes: list[str],
    fingerprint: str,
    image_shape: list[int],
    parquet_paths: dict[str, str],
    reports: list[ContractReport],
    dataset_dir: Path,
) -> DatasetRecord:
    """The record of what ingestion built (dataset.json, and the heart of the CLI's --json output)."""
    quarantined = manifest[manifest["status"] != STATUS_OK]
    contracts: dict[str, dict] = {}
    for report in reports:
        entry = contracts.setdefault(report.suite, {"success": True, "failed": [], "warnings": [], "data_docs": []})
        entry["success"] = entry["success"] and report.success
        entry["data_docs"] += [report.docs_url] if report.docs_url else []
        entry["failed"] += [f"{report.target}: {name}" for name in report.to_dict()["failed"]]
        entry["warnings"] += [f"{report.target}: {name}" for name in report.to_dict()["warnings"]]
    splits = manifest[manifest["status"] == STATUS_OK]["split"].value_counts()
    return DatasetRecord(
        dataset_fingerprint=fingerprint,
        dataset_dir=str(dataset_dir),
        classes=classes,
        image_shape=image_shape,
        splits={split: int(splits.get(split, 0)) for split in parquet_paths},
        files_found=len(manifest),
        quarantined=len(quarantined),
        quarantine_examples=[
            {"path": path, "reason": reason}
            for path, reason in zip(
                quarantined["path"][:QUARANTINE_EXAMPLES], quarantined["reason"][:QUARANTINE_EXAMPLES], strict=True
            )
        ],
        manifest=str(dataset_dir / "manifest.parquet"),
        parquet=parquet_paths,
        contracts=contracts,
    )


def class_count_table(manifest: pd.DataFrame, classes: list[str]) -> list[dict]:
    """Rows of images per class and split, for a Prefect table artifact."""
    usable = manifest[manifest["status"] == STATUS_OK]
    counts = usable.groupby(["class_name", "split"]).size().unstack(fill_value=0)
    return [
        {
            "class": name,
            **{split: int(counts.loc[name].get(split, 0)) if name in counts.index else 0 for split in counts.columns},
        }
        for name in classes
    ]


def write_dataset_record(record: DatasetRecord, dataset_dir: Path) -> Path:
    """Write dataset.json atomically; it is written last, so its presence marks a finished ingest."""
    return write_json_atomically(Path(dataset_dir) / DATASET_RECORD_NAME, record.model_dump(mode="json"))


@task(name="record-dataset", cache_policy=NO_CACHE)
def record_dataset_task(
    manifest: pd.DataFrame,
    classes: list[str],
    fingerprint: str,
    image_shape: list[int],
    parquet_paths: dict[str, str],
    reports: list[ContractReport],
    dataset_dir: Path,
) -> DatasetRecord:
    """Prefect task: write dataset.json and publish the class-count table artifact."""
    summary = dataset_summary(manifest, classes, fingerprint, image_shape, parquet_paths, reports, Path(dataset_dir))
    write_dataset_record(summary, Path(dataset_dir))
    publish_table(
        "dataset-class-counts",
        class_count_table(manifest, classes),
        f"Images per class and split, dataset {fingerprint[:12]}",
    )
    return summary

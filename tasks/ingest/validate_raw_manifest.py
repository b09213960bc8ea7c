"""Stage 4 of ingestion: hold the scanned, decoded and split manifest to the raw_manifest contract.

The suite lives in data_contracts/raw_manifest.json; this stage fills in its runtime parameters
(the thresholds of ContractConfig and the dataset's classes) and reports through
data_contracts/contract_reports.py: a hard breach stops the run before the data is used.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.data_contracts.contract_reports import publish_contract_reports
from visionflow.data_contracts.contract_suites import ContractReport
from visionflow.data_contracts.gx_validation import validate
from visionflow.images.imaging import ACCEPTED_FORMATS
from visionflow.run_context import flow_run_name

RAW_SUITE = "raw_manifest"


class ContractConfig(BaseModel):
    """Thresholds the raw_manifest contract applies; every one is a $PARAMETER of the suite."""

    decode_mostly: float = Field(default=0.9, ge=0.0, le=1.0)  # Least share of files that must decode, 0..1.
    formats: list[str] = Field(default_factory=lambda: sorted(ACCEPTED_FORMATS))  # Accepted source formats.
    min_side: int = Field(default=8, ge=1)  # Smallest source width or height, in pixels.
    max_side: int = Field(default=20_000, ge=1)  # Largest source width or height, in pixels.
    min_images_per_class: int = Field(default=5, ge=1)  # Fewest images of a class in any split.
    max_class_ratio: float = Field(default=10.0, ge=1.0)  # Largest class over smallest, per split (soft).


def raw_manifest_parameters(classes: list[str], config: ContractConfig) -> dict:
    """The raw_manifest suite's parameters for a dataset with these classes."""
    return {
        "decode_mostly": config.decode_mostly,
        "formats": config.formats,
        "min_side": config.min_side,
        "max_side": config.max_side,
        "classes": classes,
        "min_images_per_class": config.min_images_per_class,
        "min_class_balance": 1.0 / config.max_class_ratio,
    }


@task(name="validate-raw-manifest", cache_policy=NO_CACHE)
def validate_raw_manifest_task(
    manifest: pd.DataFrame, classes: list[str], config: ContractConfig, report_path: Path, data_docs: Path | None = None
) -> ContractReport:
    """Prefect task: the raw_manifest contract on the scanned, decoded and split manifest.

    data_docs (VISIONFLOW_HOME), when given, keeps the result in GX's Data Docs site there too.
    """
    parameters = raw_manifest_parameters(classes, config)
    report = validate(manifest, RAW_SUITE, parameters, "manifest", data_docs=data_docs, run_name=flow_run_name())
    publish_contract_reports([report], Path(report_path), "contract-raw-manifest", "Raw manifest contract")
    return report

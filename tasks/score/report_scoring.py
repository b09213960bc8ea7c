"""Scoring stage 4: the run's report for people (Prefect artifacts) and machines (JSON).

The report counts what happened to the drop's files, shows the predicted class mix and the
confidence histogram, and compares the drop with the model's training data: pixel statistics
and class mix, flagged as drift when they lie far apart (see visionflow/images/image_profile.py: compare_profiles).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.atomic import write_json_atomically
from visionflow.events import DROP_DRIFTED, DROP_RESOURCE_PREFIX, DROP_SCORED, emit
from visionflow.images.image_profile import DriftConfig, compare_profiles
from visionflow.models.registry import ModelRecord
from visionflow.run_context import publish_markdown, publish_table, run_logger
from visionflow.tasks.score.score_drop import ScoreResult, ScoringCounts
from visionflow.tasks.score.streaming.part_buffer import CONFIDENCE_BINS
from visionflow.tasks.score.validate_predictions import PredictionContractResult

REPORT_ARTIFACT_KEY = "scoring-report"
CLASSES_ARTIFACT_KEY = "scoring-classes"


class ScoringReportResult(BaseModel):
    """Where a scoring run's report was written, and its drift verdict."""

    report_path: str  # The JSON report.
    drifted: bool | None  # True: the drop looks unlike the training data; None: not judged.
    drift_reasons: list[str]  # One sentence per finding, or why drift was not judged.


def drift_signal(result: ScoreResult, record: ModelRecord, config: DriftConfig) -> dict:
    """The drop's drift against the model's training profile, or why none can be computed."""
    if record.training_profile is None:
        return {"drifted": None, "reasons": [f"model {record.version} records no training profile"]}
    return compare_profiles(record.training_profile, result.profile, config)


def scoring_report(result: ScoreResult, record: ModelRecord, drop: str, contract: dict, drift: dict) -> dict:
    """Everything one scoring run reports, as plain data."""
    training_share = record.training_profile.class_share if record.training_profile else {}
    return {
        "drop": drop,
        "drop_name": result.drop_name,
        "model_version": result.model_version,
        "engine": result.engine,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": ScoringCounts.of(result).model_dump(),
        "classes": [
            {
                "class": name,
                "predicted": result.class_counts.get(name, 0),
                "share": result.profile.class_share.get(name, 0.0),
                "training_share": training_share.get(name),
            }
            for name in record.class_names
        ],
        "confidence_histogram": [
            {"from": round(float(low), 1), "to": round(float(high), 1), "rows": count}
            for low, high, count in zip(
                CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:], result.confidence_histogram, strict=True
            )
        ],
        "drift": drift,
        "pixel_profile": {
            "drop": result.profile.model_dump(exclude={"class_share"}),
            "training": record.training_profile.model_dump(exclude={"class_share"})
            if record.training_profile
            else None,
        },
        "contract": contract,
        "rejection_examples": [example.model_dump() for example in result.rejection_examples],
        "predictions_path": result.predictions_path,
        "rejections_path": result.rejections_path,
        "seconds": result.seconds,
        "images_per_second": result.images_per_second,
    }


def report_markdown(report: dict) -> str:
    """The report as markdown for the Prefect UI."""
    counts = report["counts"]
    drift = report["drift"]
    verdict = {True: "**DRIFT**", False: "no drift", None: "not judged"}[drift.get("drifted")]
    lines = [
        f"# Scoring of drop `{report['drop_name']}` with model {report['model_version']} on {report['engine']}",
        "",
        f"- files: {counts['files']:,}: **{counts['scored']:,} scored**, {counts['already_scored']:,} already "
        f"scored, **{counts['rejected']:,} rejected**",
        f"- speed: {report['images_per_second']:,.0f} images/s over {report['seconds']:.1f} s",
        f"- drift: {verdict}" + "".join(f"\n  - {reason}" for reason in drift.get("reasons", [])),
        f"- predictions: `{report['predictions_path']}`; rejections: `{report['rejections_path']}`",
        "",
        "## Confidence of the rows written",
        "",
        "| confidence | rows |",
        "|---|---|",
        *[f"| {item['from']:.1f} to {item['to']:.1f} | {item['rows']:,} |" for item in report["confidence_histogram"]],
    ]
    if report["rejection_examples"]:
        lines += ["", "## Rejected files (first few)", "", "| path | reason |", "|---|---|"]
        lines += [
            f"| {example['path'].replace('|', '/')} | {example['reason'].replace('|', '/')} |"
            for example in report["rejection_examples"]
        ]
    return "\n".join(lines)


def write_scoring_report(report: dict, reports_dir: Path) -> Path:
    """Write the report as JSON beside the drop's outputs, atomically; return its path."""
    path = Path(reports_dir) / f"scoring-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}.json"
    return write_json_atomically(path, report)


def announce(report: dict, report_path: str) -> None:
    """The drop's events: `visionflow.drop.scored` always, `visionflow.drop.drifted` when it drifted."""
    drift = report["drift"]
    payload = {
        "drop": report["drop"],
        "model_version": report["model_version"],
        "counts": report["counts"],
        "drifted": drift.get("drifted"),
        "drift_reasons": drift.get("reasons", []),
        "report": report_path,
    }
    emit(DROP_SCORED, DROP_RESOURCE_PREFIX, report["drop_name"], payload)
    if drift.get("drifted"):
        emit(DROP_DRIFTED, DROP_RESOURCE_PREFIX, report["drop_name"], payload)


@task(name="report-scoring", cache_policy=NO_CACHE)
def report_scoring_task(
    result: ScoreResult,
    record: ModelRecord,
    drop: str,
    contract: PredictionContractResult,
    reports_dir: Path,
    config: DriftConfig,
) -> ScoringReportResult:
    """Prefect task: build the report, write its JSON, publish markdown and table artifacts."""
    log = run_logger(__name__)
    drift = drift_signal(result, record, config)
    report = scoring_report(result, record, drop, contract.model_dump(), drift)
    path = write_scoring_report(report, reports_dir)
    publish_markdown(REPORT_ARTIFACT_KEY, report_markdown(report), f"Scoring report of drop {result.drop_name}")
    publish_table(CLASSES_ARTIFACT_KEY, report["classes"], f"Predicted classes of drop {result.drop_name}")
    if drift.get("drifted"):
        log.warning("drop %s looks unlike the training data: %s", result.drop_name, "; ".join(drift["reasons"]))
    announce(report, str(path))
    log.info("scoring report: %s", path)
    return ScoringReportResult(
        report_path=str(path), drifted=drift.get("drifted"), drift_reasons=drift.get("reasons", [])
    )

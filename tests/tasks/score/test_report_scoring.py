"""The scoring report: counts, class mix, confidence histogram and drift, as JSON and markdown."""

from __future__ import annotations

import json
from pathlib import Path

from visionflow.images.image_profile import DriftConfig, ImageProfile
from visionflow.models.registry import ModelRecord
from visionflow.tasks.score.report_scoring import report_markdown, report_scoring_task
from visionflow.tasks.score.score_drop import ScoreResult
from visionflow.tasks.score.validate_predictions import PredictionContractResult

RECORD = ModelRecord(
    version="v0001", model_path="model.keras", class_names=["cat", "dog"], input_shape=(8, 8, 3),
    training_profile=ImageProfile(images=500, channel_mean=[100, 100, 100], channel_std=[50, 50, 50],
                                  class_share={"cat": 0.5, "dog": 0.5}),
)  # fmt: skip


def result(mean: float, rejected: int = 1) -> ScoreResult:
    return ScoreResult(
        drop_name="drop", model_version="v0001", engine="onnx", files=41 + rejected, scored=40, already_scored=1,
        rejected=rejected,
        contents_predicted=40, prediction_rows_written=41, rejection_rows_written=rejected, orphan_parts_removed=0,
        predictions_path="p", rejections_path="r", seconds=2.0, images_per_second=20.0,
        class_counts={"cat": 30, "dog": 11}, confidence_histogram=[0] * 5 + [10, 10, 10, 10, 1],
        profile=ImageProfile(images=40, channel_mean=[mean] * 3, channel_std=[40] * 3,
                             class_share={"cat": 30 / 41, "dog": 11 / 41}),
        rejection_examples=[{"path": "bad.png", "reason": "not an image"}] * rejected,
    )  # fmt: skip


CONTRACT = PredictionContractResult(success=True, contract_version="1", report="contract.json")


def test_a_report_is_written_with_counts_classes_and_no_drift(tmp_path):
    report = report_scoring_task.fn(result(mean=105), RECORD, "/drops/drop", CONTRACT, tmp_path, DriftConfig())
    assert report.drifted is False and report.drift_reasons == []
    on_disk = json.loads(Path(report.report_path).read_text())
    assert Path(report.report_path).parent == tmp_path and on_disk["contract"] == CONTRACT.model_dump()
    assert on_disk["counts"] == {
        "files": 42, "scored": 40, "already_scored": 1, "rejected": 1, "contents_predicted": 40,
        "prediction_rows_written": 41, "rejection_rows_written": 1,
    }  # fmt: skip
    assert on_disk["rejection_examples"] == [{"path": "bad.png", "reason": "not an image"}]
    assert on_disk["classes"][0] == {"class": "cat", "predicted": 30, "share": 30 / 41, "training_share": 0.5}
    assert sum(item["rows"] for item in on_disk["confidence_histogram"]) == 41
    assert on_disk["drift"]["drifted"] is False
    markdown = report_markdown(on_disk)
    assert "**40 scored**" in markdown and "no drift" in markdown and "| bad.png | not an image |" in markdown


def test_a_dark_drop_is_flagged_in_the_report(tmp_path):
    report = report_scoring_task.fn(result(mean=10, rejected=0), RECORD, "d", CONTRACT, tmp_path, DriftConfig())
    assert report.drifted is True and "pixel means moved" in report.drift_reasons[0]
    assert "**DRIFT**" in report_markdown(json.loads(Path(report.report_path).read_text()))

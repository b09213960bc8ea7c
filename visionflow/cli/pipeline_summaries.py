"""The human summaries of the pipeline commands (ingest, train, evaluate, score), from their flows' typed results.

With --json a command prints its result's fields instead (visionflow/cli/common.py: finish).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visionflow.flows.evaluate import EvaluateSummary
    from visionflow.flows.ingest import IngestSummary
    from visionflow.flows.score import ScoreSummary
    from visionflow.flows.train import TrainSummary


def ingest_lines(summary: IngestSummary) -> list[str]:
    """The human summary of an ingest."""
    splits = ", ".join(f"{split} {rows:,}" for split, rows in summary.splits.items())
    lines = [
        f"ingested {summary.source}: {summary.files_found:,} files, {summary.quarantined:,} quarantined, "
        f"in {summary.seconds:.1f} s",
        f"classes ({len(summary.classes)}): {', '.join(summary.classes)}",
        f"image shape: {'x'.join(str(size) for size in summary.image_shape)}; splits: {splits}",
        f"dataset {summary.dataset_fingerprint[:12]} in {summary.dataset_dir}",
    ]
    for suite, outcome in summary.contracts.items():
        state = "passed" if outcome["success"] else "FAILED"
        warnings = f" ({len(outcome['warnings'])} warnings)" if outcome["warnings"] else ""
        pages = f"; Data Docs: {outcome['data_docs'][0]}" if outcome.get("data_docs") else ""
        lines.append(f"contract {suite}: {state}{warnings}{pages}")
    for example in summary.quarantine_examples[:5]:
        lines.append(f"quarantined: {example['path']}: {example['reason']}")
    if summary.quarantined > 5:
        lines.append(f"... all {summary.quarantined} quarantined files are listed in {summary.manifest}")
    return lines


def train_lines(summary: TrainSummary) -> list[str]:
    """The human summary of a training run."""
    verdict = "promoted to champion" if summary.promoted else "registered, not promoted"
    labels = summary.labels
    learnt = []
    if labels:
        left_out = labels.left_out_in_val_or_test + labels.left_out_unknown_class + labels.left_out_undecodable
        learnt = [
            f"trained with {labels.snapshot.count:,} accepted labels (snapshot {labels.snapshot.digest[:12]}): "
            f"{labels.added_to_train:,} images added to train, {labels.relabelled:,} relabelled, {left_out:,} left "
            f"out ({labels.left_out_in_val_or_test:,} in val or test); dataset {summary.dataset_fingerprint[:12]}"
        ]
    return [
        f"model {summary.model_version} ({summary.preset} for {summary.machine_kind}, {summary.epochs_run} epochs in "
        f"{summary.training_seconds:,.0f} s, {summary.train_images_per_second:,.0f} images/s): "
        f"test accuracy {summary.test_accuracy:.4f}, macro F1 {summary.macro_f1:.4f} (on {summary.engine}, "
        "the engine scoring takes by default)",
        *learnt,
        f"{verdict}: {summary.gate_reason}",
        f"champion: {summary.champion_version or 'none'}; model file {summary.model_path}",
        f"done in {summary.seconds:.0f} s",
    ]


def evaluate_lines(summary: EvaluateSummary) -> list[str]:
    lines = [
        f"evaluated {summary.model_version} on {summary.data} ({summary.images:,} images) in "
        f"{summary.seconds:.1f} s: accuracy {summary.accuracy:.4f}, macro F1 {summary.macro_f1:.4f}",
        f"metrics: {summary.metrics_path}",
        f"confusion matrix: {summary.confusion_png}; every image's answer: {summary.predictions_path}",
    ]
    comparison = summary.comparison
    if comparison:
        first, second = comparison.models
        changes = comparison.largest_recall_differences(3)
        lines += [
            f"{first} {comparison.accuracy[first]:.4f} against {second} {comparison.accuracy[second]:.4f}: "
            f"they disagree on {comparison.disagreements:,} images (only {first} right on "
            f"{comparison.only_first_right:,}, only {second} right on {comparison.only_second_right:,})",
            f"largest recall differences ({second} minus {first}): "
            + ", ".join(f"{name} {difference:+.4f}" for name, difference in changes),
            f"comparison: {comparison.comparison_path}",
        ]
    return lines


def score_lines(summary: ScoreSummary) -> list[str]:
    """The human summary of a scoring run."""
    reasons = "; ".join(summary.drift_reasons)
    drift = {True: f"DRIFT: {reasons}", False: "no drift"}.get(summary.drifted, f"drift not judged ({reasons})")
    classes = ", ".join(f"{name} {count:,}" for name, count in sorted(summary.class_counts.items()) if count)
    lines = [
        f"scored drop {summary.drop} with model {summary.model_version} on {summary.engine} in {summary.seconds:.1f} s "
        f"(decode, predict and write: {summary.scoring_seconds:.1f} s, {summary.scoring_images_per_second:,.0f} "
        "images/s)",
        f"files {summary.files:,}: {summary.scored:,} scored, {summary.already_scored:,} already scored, "
        f"{summary.rejected:,} rejected",
        f"predicted classes of the rows written: {classes or 'none (no new rows)'}",
        drift,
    ]
    lines += [f"rejected: {example.path}: {example.reason}" for example in summary.rejection_examples]
    lines.append(f"predictions: {summary.predictions_path}")
    lines.append(f"rejections: {summary.rejections_path}; report: {summary.report_path}")
    return lines

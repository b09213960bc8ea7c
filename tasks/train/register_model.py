"""Training's last stage: register the model with everything needed to trust or reproduce it.

Every trained model is registered under VISIONFLOW_HOME/models/<version>/ (visionflow/models/registry.py
owns the layout): the model, its training history and curves, its evaluation, and metadata.json
with the dataset, the recipe, the results, the training images' profile (against which scoring
measures drift) and the provenance (package versions, git commit). Only a model the gate passed
becomes the champion; a rejected one stays registered with the reason, and never touches the
champion pointer.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.engines.engine_exports import ModelExports
from visionflow.events import MODEL_PROMOTED, MODEL_REJECTED, MODEL_RESOURCE_PREFIX, emit
from visionflow.images.image_profile import ImageProfile, profile_split
from visionflow.images.splits import DatasetRecord, read_split_metadata
from visionflow.models.champion import set_champion
from visionflow.models.champion_pointer import read_champion
from visionflow.models.metadata_records import GateRecord, LabelsSnapshotRecord
from visionflow.models.mlflow_tracking import mirror_registration
from visionflow.models.registry import MODEL_FILE, ModelMetadata, register
from visionflow.run_context import publish_markdown, run_logger
from visionflow.tasks.train.evaluate_model import EvaluationResult
from visionflow.tasks.train.export_model import ExportResult
from visionflow.tasks.train.gate_model import GateDecision
from visionflow.tasks.train.promote_model import actor, publish_champion_history
from visionflow.tasks.train.recipe.presets import Preset, preset_hyperparameters
from visionflow.tasks.train.train_model import TrainResult, forget_finished_training

# Packages whose versions a model's metadata records, because they shape its pixels or weights.
RECORDED_PACKAGES = ["visionflow", "tensorflow", "keras", "numpy", "pillow", "simplejpeg", "pyarrow", "pandas",
                     "prefect", "great-expectations", "scikit-learn"]  # fmt: skip


class Registration(BaseModel):
    """Where a trained model was registered, and whether it became the champion."""

    model_version: str  # Registry version, e.g. "v0003".
    model_path: str  # Its model.keras in the registry.
    promoted: bool  # True when the gate made it the champion.
    gate_reason: str  # The gate's decision, in a sentence.
    champion_version: str | None  # The champion after this registration; None when there is none.


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a model."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(directory: Path) -> str | None:
    """The commit checked out where directory lies, when it lies in a git checkout; else None."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def registry_files(
    training: TrainResult, evaluation: EvaluationResult, exported: ExportResult | None = None
) -> dict[str, Path]:
    """The files a registered model keeps, by name: the model and its history and curves from
    training, its ONNX exports, the metrics and confusion matrix from evaluation."""
    run_dir = training.model_path.parent
    files = {
        MODEL_FILE: training.model_path,
        "history.json": run_dir / "history.json",
        "curves.png": run_dir / "curves.png",
    }
    files = {name: path for name, path in files.items() if path.exists()}
    files |= exported.files if exported else {}
    return {**files, "metrics.json": evaluation.metrics_path, "confusion.png": evaluation.confusion_png}


def model_metadata(
    dataset: DatasetRecord,
    training: TrainResult,
    evaluation: EvaluationResult,
    preset: Preset,
    training_profile: ImageProfile,
    contract_versions: dict[str, str],
    exports: ModelExports | None = None,
    labels: LabelsSnapshotRecord | None = None,
) -> ModelMetadata:
    """Everything a registered model records: its data (and the reviewed labels in it), recipe, results and
    provenance."""
    return ModelMetadata(
        dataset_fingerprint=dataset.dataset_fingerprint,
        dataset_dir=dataset.dataset_dir,
        contract_versions=contract_versions,
        class_names=dataset.classes,
        input_shape=dataset.image_shape,
        training_profile=training_profile,
        preset=preset.name,
        hyperparameters=preset_hyperparameters(preset),
        seed=training.seed,
        precision=training.precision,
        epochs_run=training.epochs_run,
        train_seconds=round(training.seconds, 2),
        train_images_per_second=round(training.train_images_per_second, 1),
        metrics=evaluation.metrics.recorded(),
        packages=package_versions(),
        git_commit=git_commit(Path(__file__).resolve().parent),
        exports=exports,
        machine=preset.machine,
        # Only a model trained with labels records them, so every other model's metadata.json reads as before.
        **({"labels": labels} if labels else {}),
    )


def register_and_promote(
    files: dict[str, Path], metadata: ModelMetadata, decision: GateDecision, models_root: Path
) -> Registration:
    """Register the files with metadata and the gate's decision; promote the version when it passed."""
    registered_at = datetime.now(UTC).isoformat(timespec="seconds")
    record = metadata.model_copy(update={"gate": GateRecord(**asdict(decision)), "registered_at": registered_at})
    version = register(files, record, models_root)
    if decision.promoted:
        set_champion(models_root, version, reason=decision.reason, by=actor())
    champion = read_champion(models_root)
    return Registration(
        model_version=version,
        model_path=str(models_root / version / MODEL_FILE),
        promoted=decision.promoted,
        gate_reason=decision.reason,
        champion_version=champion.version if champion else None,
    )


def mirror_to_mlflow(
    registration: Registration, training: TrainResult, evaluation: EvaluationResult, preset: Preset, dataset
) -> str | None:
    """The registered version as an MLflow run and model version, when MLFLOW_TRACKING_URI is set."""
    parameters = {"preset": preset.name, "dataset_fingerprint": dataset.dataset_fingerprint,
                  **preset_hyperparameters(preset)}  # fmt: skip
    headline = ("accuracy", "macro_f1", "macro_precision", "macro_recall")
    test_metrics = {name: getattr(evaluation.metrics, name) for name in headline}
    files = [evaluation.metrics_path, evaluation.confusion_png, training.model_path.parent / "curves.png"]
    return mirror_registration(registration.model_version, parameters, training.history, test_metrics, files,
                               Path(registration.model_path), registration.promoted)  # fmt: skip


@task(name="register-model", cache_policy=NO_CACHE)
def register_model_task(
    dataset: DatasetRecord,
    training: TrainResult,
    evaluation: EvaluationResult,
    preset: Preset,
    decision: GateDecision,
    models_root: Path,
    exported: ExportResult | None = None,
    labels: LabelsSnapshotRecord | None = None,
) -> Registration:
    """Prefect task: profile the training split, register the model with its exports (None: not
    exported, it scores on Keras) and the labels snapshot it learnt from (None: trained without
    labels), promote it when the gate passed."""
    log = run_logger(__name__)
    # The drift reference is the training split's profile, also for a recipe that fitted on the
    # validation split too: the two are drawn from the same images, so their profiles agree.
    train_path = dataset.parquet["train"]
    contract_versions = read_split_metadata(train_path).contract_versions
    profile = profile_split(train_path)
    exports = exported.exports if exported else None
    metadata = model_metadata(dataset, training, evaluation, preset, profile, contract_versions, exports, labels)
    files = registry_files(training, evaluation, exported)
    registration = register_and_promote(files, metadata, decision, Path(models_root))
    forget_finished_training(training.model_path.parent)
    version = registration.model_version
    event = MODEL_PROMOTED if decision.promoted else MODEL_REJECTED
    payload = {
        "reason": decision.reason,
        "accuracy": evaluation.metrics.accuracy,
        "macro_f1": evaluation.metrics.macro_f1,
        "champion": registration.champion_version,
        "compared_with": decision.champion_version,
        "dataset_fingerprint": dataset.dataset_fingerprint,
        "preset": preset.name,
        "labels_digest": labels.digest if labels else None,
    }
    emit(event, MODEL_RESOURCE_PREFIX, version, payload)
    mirror_to_mlflow(registration, training, evaluation, preset, dataset)
    if decision.promoted:
        log.info("registered %s and promoted it to champion: %s", version, decision.reason)
    else:
        log.warning("registered %s, not promoted: %s", version, decision.reason)
    publish_markdown(
        "model-registry",
        f"# Model {version}\n\n- promoted: **{decision.promoted}**\n- reason: {decision.reason}\n"
        f"- champion now: {registration.champion_version or 'none'}\n",
        f"Registration of model {version}",
    )
    publish_champion_history(Path(models_root))
    return registration

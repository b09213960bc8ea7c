"""What `visionflow models list` and `models show` report: typed summaries of the registry, and their lines.

Kept apart from the commands so that `visionflow --help` and the other commands do not load the
registry's modules (NumPy and Pillow come with the training profile's format).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, model_serializer

from visionflow.engines.engine_exports import ModelExports
from visionflow.models.champion import ChampionChange
from visionflow.models.champion_pointer import read_champion
from visionflow.models.registry import METADATA_FILE, VERSION_PATTERN, ModelMetadata, read_metadata


class ModelSummary(BaseModel):
    """One registered version in a line's worth of fields, as `models list` shows it."""

    version: str  # Registry version, e.g. "v0003".
    champion: bool  # True for the version the champion pointer names.
    preset: str | None  # The training recipe's name; None when its metadata records none.
    dataset: str | None  # The name of the dataset folder it was trained on; None: unrecorded.
    dataset_fingerprint: str | None  # That dataset's fingerprint; None: unrecorded.
    test_accuracy: float | None  # Share of its test split classified correctly, 0 to 1; None: unrecorded.
    macro_f1: float | None  # Mean per-class F1 on its test split, 0 to 1; None: unrecorded.
    registered_at: str | None  # When it was registered, ISO 8601 in UTC; None: unrecorded.
    gate_promoted: bool | None  # Whether the gate promoted it at registration; None: unrecorded.
    gate_reason: str | None  # The gate's decision, in a sentence; None: unrecorded.


class RegistryListing(BaseModel):
    """The champion and every registered version, newest first."""

    models_root: str  # The registry folder.
    champion: str | None  # The champion's version; None when no model was promoted yet.
    models: list[ModelSummary]  # Every registered version, newest first.


class ShownModel(BaseModel):
    """One registered version in full, as `models show` prints it."""

    version: str  # The registry folder's version, e.g. "v0003".
    metadata: ModelMetadata  # Its metadata.json.
    champion: bool  # True when it is the champion.
    history: list[ChampionChange]  # The champion changes it took part in, oldest first.

    @model_serializer
    def json_fields(self) -> dict[str, Any]:
        """metadata.json's fields (the training profile left out: it is long and for machines), then the rest."""
        fields = {name: value for name, value in self.metadata.file_fields().items() if name != "training_profile"}
        return {**fields, "champion": self.champion, "history": [change.model_dump() for change in self.history]}


def model_summary(version_dir: Path, champion: str | None) -> ModelSummary:
    """One registered version in a line's worth of fields."""
    metadata = read_metadata(version_dir)
    metrics, gate = metadata.metrics, metadata.gate
    return ModelSummary(
        version=version_dir.name,
        champion=version_dir.name == champion,
        preset=metadata.preset,
        dataset=Path(metadata.dataset_dir or "").name or None,
        dataset_fingerprint=metadata.dataset_fingerprint,
        test_accuracy=metrics.accuracy if metrics else None,
        macro_f1=metrics.macro_f1 if metrics else None,
        registered_at=metadata.registered_at,
        gate_promoted=gate.promoted if gate else None,
        gate_reason=gate.reason if gate else None,
    )


def registry_listing(models_root: Path) -> RegistryListing:
    """The champion and every registered version, newest first."""
    pointer = read_champion(models_root)
    champion = pointer.version if pointer else None
    folders = [path for path in models_root.glob("v[0-9]*") if VERSION_PATTERN.fullmatch(path.name)]
    folders = sorted((path for path in folders if (path / METADATA_FILE).is_file()), reverse=True)
    models = [model_summary(folder, champion) for folder in folders]
    return RegistryListing(models_root=str(models_root), champion=champion, models=models)


def list_lines(listing: RegistryListing) -> list[str]:
    """The listing as `models list` prints it: a line per version, the champion marked."""
    if not listing.models:
        return [f"no models registered in {listing.models_root}: train one with `visionflow train --data ...`"]
    lines = [f"  {'version':8} {'preset':8} {'dataset':22} {'accuracy':>8} {'macro F1':>8}  {'registered':16}  gate"]
    for model in listing.models:
        gate = {True: "promoted", False: "rejected"}.get(model.gate_promoted, "?")
        accuracy, macro_f1 = _number(model.test_accuracy), _number(model.macro_f1)
        lines.append(
            f"{'*' if model.champion else ' '} {model.version:8} {model.preset or '?':8} "
            f"{(model.dataset or '?')[:22]:22} {accuracy:>8} {macro_f1:>8}  "
            f"{(model.registered_at or '?')[:16].replace('T', ' '):16}  {gate}"
        )
    lines.append(f"* champion: {listing.champion or 'none yet'}   (registry: {listing.models_root})")
    return lines


def _number(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "?"


def show_lines(shown: ShownModel) -> list[str]:
    """One model as `models show` prints it: its data, results, gate decision and champion changes."""
    metadata, metrics, gate = shown.metadata, shown.metadata.metrics, shown.metadata.gate
    lines = [
        f"{shown.version}{' (champion)' if shown.champion else ''}: preset {metadata.preset}, "
        f"registered {metadata.registered_at}",
        f"data: {metadata.dataset_dir} (fingerprint {str(metadata.dataset_fingerprint)[:12]}), "
        f"classes {', '.join(metadata.class_names or [])}, input {'x'.join(map(str, metadata.input_shape or []))}",
        f"test accuracy {_number(metrics and metrics.accuracy)}, macro F1 {_number(metrics and metrics.macro_f1)}; "
        f"{metadata.epochs_run} epochs in {metadata.train_seconds} s",
        f"gate: {'promoted' if gate and gate.promoted else 'not promoted'}: {gate.reason if gate else None}",
    ]
    recalls = ", ".join(f"{row.class_name} {row.recall:.2f}" for row in (metrics.per_class if metrics else []))
    if recalls:
        lines.append(f"recall per class: {recalls}")
    if metadata.machine is not None:
        lines.append(metadata.machine.describe())
    if metadata.labels is not None:
        learnt = metadata.labels
        lines.append(f"learnt from {learnt.count} reviewed labels (snapshot {learnt.digest[:12]}): "
                     f"{learnt.added_to_train} images added to train, {learnt.relabelled} relabelled")  # fmt: skip
    lines += export_lines(metadata.exports)
    for change in shown.history:
        moved = f"{change.from_version or 'none'} -> {change.to_version}"
        lines.append(f"{change.at}: {change.action} {moved}: {change.reason} (by {change.by})")
    return lines


def export_lines(exports: ModelExports | None) -> list[str]:
    """Which engines can score a model, from its exports: each export's check and speed, and what auto takes."""
    if exports is None:
        return ["engines: keras only, not exported yet (`visionflow models export VERSION` exports it)"]
    if exports.failure:
        return [f"engines: keras only: {exports.failure}"]
    fastest = exports.fastest_passed()
    keras_speed = f", keras {exports.keras_images_per_second:,.0f} images/s" if exports.keras_images_per_second else ""
    lines = [f"engines: auto scores on {fastest.engine if fastest else 'keras'}{keras_speed}"]
    for export in exports.engines:
        speed = f", {export.images_per_second:,.0f} images/s" if export.images_per_second else ""
        verdict = "scores" if export.passed else "refused"
        lines.append(f"  {export.engine} ({export.file}): {verdict}: {export.reason}{speed}")
    return lines

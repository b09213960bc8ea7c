"""`visionflow models`: list and show the registered models, promote one, roll the champion back.

list and show only read the registry (no Prefect, no TensorFlow), so they answer at once;
promote and rollback run the `promote` and `rollback` flows, as the UI's deployments do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel, model_serializer

from visionflow.cli.common import HomeOption, JsonOption, app, fail, finish, prepare, run_flow
from visionflow.models.champion import ChampionChange, read_history
from visionflow.models.champion_pointer import read_champion
from visionflow.models.registry import METADATA_FILE, VERSION_PATTERN, ModelMetadata, find_model, read_metadata

if TYPE_CHECKING:
    from visionflow.tasks.train.promote_model import ChampionMove

models_app = typer.Typer(help="Look at the registered models and move the champion.", no_args_is_help=True)
app.add_typer(models_app, name="models")

VersionArgument = Annotated[str, typer.Argument(metavar="VERSION", help="A registered version, such as v0003.")]


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


@models_app.command("list")
def list_models(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Every registered model with its preset, dataset, test accuracy, macro F1, date and gate outcome."""
    from visionflow.errors import VisionflowError
    from visionflow.home import resolve_home

    try:
        listing = registry_listing(resolve_home(home).models)
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    finish(listing, json_output, _list_lines)


def _list_lines(listing: RegistryListing) -> list[str]:
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


@models_app.command()
def show(version: VersionArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """One model: its data, recipe, metrics, gate decision, and the champion changes it took part in."""
    from visionflow.errors import VisionflowError
    from visionflow.home import resolve_home

    models_root = resolve_home(home).models
    try:
        record = find_model(models_root, version)
        metadata = read_metadata(models_root / record.version)
        pointer = read_champion(models_root)
        history = [change for change in read_history(models_root)
                   if record.version in (change.from_version, change.to_version)]  # fmt: skip
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    champion = bool(pointer and pointer.version == record.version)
    finish(ShownModel(version=record.version, metadata=metadata, champion=champion, history=history),
           json_output, _show_lines)  # fmt: skip


def _show_lines(shown: ShownModel) -> list[str]:
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
    for change in shown.history:
        moved = f"{change.from_version or 'none'} -> {change.to_version}"
        lines.append(f"{change.at}: {change.action} {moved}: {change.reason} (by {change.by})")
    return lines


@models_app.command()
def promote(
    version: VersionArgument,
    force: Annotated[bool, typer.Option("--force", help="Promote past the approval gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the champion history.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make VERSION the champion if the approval gate passes it against the current champion.

    The gate is training's: the floors, and the champion measured again on VERSION's own test split. Exit 8 when the gate refuses.
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    if force and not (reason or "").strip():
        fail("--force needs --reason TEXT: the champion history records why the gate was overridden", 2, json_output)
    layout = prepare(home, json_output)
    from visionflow.flows.models import promote_flow

    move = run_flow(
        lambda: promote_flow(version=version, force=force, reason=reason, home=str(layout.root), return_state=True),
        json_output,
    )
    finish(move, json_output, _move_lines)


@models_app.command()
def rollback(
    reason: Annotated[str | None, typer.Option(help="Why, for the champion history.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Return the champion to the one before it (the champion history says which)."""
    layout = prepare(home, json_output)
    from visionflow.flows.models import rollback_flow

    move = run_flow(lambda: rollback_flow(reason=reason, home=str(layout.root), return_state=True), json_output)
    finish(move, json_output, _move_lines)


def _move_lines(move: ChampionMove) -> list[str]:
    if move.action == "none":
        return [f"champion unchanged: {move.reason}"]
    return [f"champion: {move.from_version or 'none'} -> {move.to_version} ({move.action}): {move.reason}",
            f"recorded in the champion history by {move.by}"]  # fmt: skip

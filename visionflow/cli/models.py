"""`visionflow models`: list and show the registered models, promote one, roll the champion back.

list and show only read the registry (no Prefect, no TensorFlow), so they answer at once;
promote and rollback run the `promote` and `rollback` flows, as the UI's deployments do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visionflow.cli.common import HomeOption, JsonOption, app, fail, finish, prepare, run_flow

models_app = typer.Typer(help="Look at the registered models and move the champion.", no_args_is_help=True)
app.add_typer(models_app, name="models")

VersionArgument = Annotated[str, typer.Argument(metavar="VERSION", help="A registered version, such as v0003.")]


def model_summary(version_dir: Path, champion: str | None) -> dict:
    """One registered version in a line's worth of fields."""
    from visionflow.models.registry import read_metadata

    metadata = read_metadata(version_dir)
    metrics, gate = metadata.get("metrics", {}), metadata.get("gate", {})
    return {
        "version": version_dir.name,
        "champion": version_dir.name == champion,
        "preset": metadata.get("preset"),
        "dataset": Path(metadata.get("dataset_dir", "")).name or None,
        "dataset_fingerprint": metadata.get("dataset_fingerprint"),
        "test_accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "registered_at": metadata.get("registered_at"),
        "gate_promoted": gate.get("promoted"),
        "gate_reason": gate.get("reason"),
    }


def registry_listing(models_root: Path) -> dict:
    """The champion and every registered version, newest first."""
    from visionflow.models.registry import METADATA_FILE, VERSION_PATTERN, read_champion

    pointer = read_champion(models_root)
    champion = pointer["version"] if pointer else None
    folders = [path for path in models_root.glob("v[0-9]*") if VERSION_PATTERN.fullmatch(path.name)]
    folders = sorted((path for path in folders if (path / METADATA_FILE).is_file()), reverse=True)
    return {"models_root": str(models_root), "champion": champion,
            "models": [model_summary(folder, champion) for folder in folders]}  # fmt: skip


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


def _list_lines(listing: dict) -> list[str]:
    if not listing["models"]:
        return [f"no models registered in {listing['models_root']}: train one with `visionflow train --data ...`"]
    lines = [f"  {'version':8} {'preset':8} {'dataset':22} {'accuracy':>8} {'macro F1':>8}  {'registered':16}  gate"]
    for model in listing["models"]:
        gate = {True: "promoted", False: "rejected"}.get(model["gate_promoted"], "?")
        accuracy, macro_f1 = _number(model["test_accuracy"]), _number(model["macro_f1"])
        lines.append(
            f"{'*' if model['champion'] else ' '} {model['version']:8} {model['preset'] or '?':8} "
            f"{(model['dataset'] or '?')[:22]:22} {accuracy:>8} {macro_f1:>8}  "
            f"{(model['registered_at'] or '?')[:16].replace('T', ' '):16}  {gate}"
        )
    lines.append(f"* champion: {listing['champion'] or 'none yet'}   (registry: {listing['models_root']})")
    return lines


def _number(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "?"


@models_app.command()
def show(version: VersionArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """One model: its data, recipe, metrics, gate decision, and the champion changes it took part in."""
    from visionflow.errors import VisionflowError
    from visionflow.home import resolve_home
    from visionflow.models.champion import read_history
    from visionflow.models.registry import find_model, read_champion, read_metadata

    models_root = resolve_home(home).models
    try:
        record = find_model(models_root, version)
        metadata = read_metadata(models_root / record.version)
        pointer = read_champion(models_root)
        history = [change.model_dump() for change in read_history(models_root)
                   if record.version in (change.from_version, change.to_version)]  # fmt: skip
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    metadata.pop("training_profile", None)
    shown = {**metadata, "champion": bool(pointer and pointer["version"] == record.version), "history": history}
    finish(shown, json_output, _show_lines)


def _show_lines(shown: dict) -> list[str]:
    metrics, gate = shown.get("metrics", {}), shown.get("gate", {})
    lines = [
        f"{shown['version']}{' (champion)' if shown['champion'] else ''}: preset {shown.get('preset')}, "
        f"registered {shown.get('registered_at')}",
        f"data: {shown.get('dataset_dir')} (fingerprint {str(shown.get('dataset_fingerprint'))[:12]}), "
        f"classes {', '.join(shown.get('class_names', []))}, input {'x'.join(map(str, shown.get('input_shape', [])))}",
        f"test accuracy {_number(metrics.get('accuracy'))}, macro F1 {_number(metrics.get('macro_f1'))}; "
        f"{shown.get('epochs_run')} epochs in {shown.get('train_seconds')} s",
        f"gate: {'promoted' if gate.get('promoted') else 'not promoted'}: {gate.get('reason')}",
    ]
    recalls = ", ".join(f"{row['class']} {row['recall']:.2f}" for row in metrics.get("per_class", []))
    if recalls:
        lines.append(f"recall per class: {recalls}")
    for change in shown["history"]:
        moved = f"{change['from_version'] or 'none'} -> {change['to_version']}"
        lines.append(f"{change['at']}: {change['action']} {moved}: {change['reason']} (by {change['by']})")
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


def _move_lines(move: dict) -> list[str]:
    if move["action"] == "none":
        return [f"champion unchanged: {move['reason']}"]
    return [f"champion: {move['from_version'] or 'none'} -> {move['to_version']} ({move['action']}): {move['reason']}",
            f"recorded in the champion history by {move['by']}"]  # fmt: skip

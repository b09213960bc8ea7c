"""`visionflow models`: list and show the registered models, export one, promote one, roll the champion back.

list and show only read the registry (no Prefect, no TensorFlow), so they answer at once;
export writes a model's ONNX files and checks them (it imports TensorFlow to read model.keras);
promote and rollback run the `promote` and `rollback` flows, as the UI's deployments do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from visionflow.cli.common import (
    HomeOption,
    JsonOption,
    app,
    fail,
    finish,
    given,
    prepare,
    run_flow,
    validated_config,
)

if TYPE_CHECKING:
    from visionflow.tasks.train.promote_model import ChampionMove

models_app = typer.Typer(help="Look at the registered models and move the champion.", no_args_is_help=True)
app.add_typer(models_app, name="models")

VersionArgument = Annotated[str, typer.Argument(metavar="VERSION", help="A registered version, such as v0003.")]


@models_app.command("list")
def list_models(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Every registered model with its preset, dataset, test accuracy, macro F1, date and gate outcome."""
    # Imported here, as every command's work is: `visionflow --help` should not load the registry.
    from visionflow.cli.model_listing import list_lines, registry_listing
    from visionflow.errors import VisionflowError
    from visionflow.home import resolve_home

    try:
        listing = registry_listing(resolve_home(home).models)
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    finish(listing, json_output, list_lines)


@models_app.command()
def show(version: VersionArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """One model: its data, recipe, metrics, gate decision, and the champion changes it took part in."""
    from visionflow.cli.model_listing import ShownModel, show_lines
    from visionflow.errors import VisionflowError
    from visionflow.home import resolve_home
    from visionflow.models.champion import read_history
    from visionflow.models.champion_pointer import read_champion
    from visionflow.models.registry import find_model, read_metadata

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
           json_output, show_lines)  # fmt: skip


@models_app.command()
def export(
    version: VersionArgument,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also quantise to int8 (calibrated on training images); kept only within 0.5 points of float32.",
        ),
    ] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Export VERSION to ONNX Runtime and OpenVINO from its model.keras, checked on its own test split.

    Each engine scores only if its predictions match Keras' (top-1 on 99.9 % of the test images, probabilities within 1e-3); the engines are timed, and `--engine auto` then takes the fastest. Run it again to rebuild an export that was changed or lost.
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    import logging

    from visionflow.cli.model_listing import export_lines
    from visionflow.errors import VisionflowError
    from visionflow.home import configure_environment
    from visionflow.models.model_export import ExportConfig
    from visionflow.models.registry_exports import export_registered

    layout = configure_environment(home)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = validated_config(ExportConfig, given(int8=int8 or None), json_output)
    if not json_output:
        typer.echo(f"exporting {version}: ONNX, then each engine checked against Keras on the test split...", err=True)
    try:
        exports = export_registered(layout.models, version, config)
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    except Exception as error:  # The converter or a runtime failed on this model: say what, not a traceback.
        fail(f"exporting {version} failed ({type(error).__name__}: {error}); it still scores on Keras", 1, json_output)
    if exports.fastest_passed(precision_variants=True) is None:
        reasons = exports.failure or "; ".join(f"{export.engine}: {export.reason}" for export in exports.engines)
        fail(f"no engine may score {version} ({reasons}); it still scores on Keras", 1, json_output)
    finish(exports, json_output, export_lines)


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

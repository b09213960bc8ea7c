"""The pipeline commands of `visionflow`: ingest, train, evaluate, score.

Each runs one flow; heavy libraries are imported inside the command, after VISIONFLOW_HOME and
the offline settings are in place.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from visionflow.cli.common import (
    ChannelsOption,
    DaskAddressOption,
    DaskWorkersOption,
    EngineOption,
    HomeOption,
    ImageSizeOption,
    JsonOption,
    WorkersOption,
    app,
    engine_modules,
    fail,
    finish,
    given,
    prepare,
    run_flow,
    validated_config,
)
from visionflow.cli.pipeline_summaries import evaluate_lines, ingest_lines, score_lines, train_lines
from visionflow.network.hardware import MachineKind
from visionflow.network.model_config import Precision

# What the train, evaluate and score flows import late (Keras in their model stages, Great
# Expectations in their contracts); prepare() starts importing them at once (see its docstring).
FLOW_PREFETCH = ("keras", "great_expectations")


@app.callback()
def main() -> None:
    """visionflow: workflow-orchestrated batch image classification."""


@app.command()
def ingest(
    data: Annotated[
        str,
        typer.Option(
            help="An image folder (<class>/<images>, or train|val|test/<class>/<images>), 'cifar10' or 'demo'."
        ),
    ],
    image_size: ImageSizeOption = None,
    channels: ChannelsOption = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(help="Largest source width*height accepted (decompression-bomb guard).", show_default="50000000"),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Share of train carved out as validation when the source has no val.", show_default="0.1"),
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Share carved out as test when the source has no test.", show_default="0.2")
    ] = None,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Turn a labelled image folder into validated, model-ready Parquet (one file per split).

    Example, decoding on a local Dask cluster of two processes: visionflow ingest --data photos --dask-workers 2
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    layout = prepare(home, json_output, prefetch=("great_expectations",))
    from visionflow.flows.ingest import IngestConfig, ingest_flow

    values = {
        "decode": given(image_size=image_size, channels=channels, max_pixels=max_pixels, workers=workers),
        "scan": given(workers=workers),
        "split": given(val_fraction=val_fraction, test_fraction=test_fraction),
        "dask": given(address=dask_address, workers=dask_workers),
    }
    config = validated_config(IngestConfig, values, json_output)
    summary = run_flow(
        lambda: ingest_flow(data=data, config=config, home=str(layout.root), return_state=True), json_output
    )
    finish(summary, json_output, ingest_lines)


def parsed_widths(widths: str | None, json_output: bool) -> list[int] | None:
    """--widths "24,96,96" as [24, 96, 96]; exit 2 with one line when it is not whole numbers of at least 1."""
    if widths is None:
        return None
    parts = [part.strip() for part in widths.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        fail(f"invalid option: --widths {widths!r}: give whole numbers of at least 1, e.g. 24,96,96", 2, json_output)
    return [int(part) for part in parts]


@app.command()
def train(
    data: Annotated[
        str | None,
        typer.Option(
            help="An image folder, 'cifar10' or 'demo' (ingested first, reusing earlier work).", show_default="demo"
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Training recipe: 'seed' (the classic Keras CIFAR-10 CNN), 'default', 'large' and 'xlarge' "
            "(more accuracy for more time), 'tiny'.",
            show_default="default",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Train for this many epochs instead of the preset's.", show_default="the preset's"),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed the weights, augmentation and shuffling (another seed, another run).", show_default="0"
        ),
    ] = None,
    distribution: Annotated[
        Literal["auto", "none", "mirrored", "multi-worker"] | None,
        typer.Option(
            help="Spread training over devices: every local GPU when there are 2 or more (auto), one device (none), "
            "the local GPUs (mirrored), or the machines in TF_CONFIG (multi-worker); see docs/SCALING.md.",
            show_default="auto",
        ),
    ] = None,
    train_on_validation: Annotated[
        bool | None,
        typer.Option(
            "--train-on-validation/--no-train-on-validation",
            help="Fit on the validation split too: more images to learn from, no early stopping, the last "
            "epoch's model; the test split stays unseen.",
            show_default="the preset's",
        ),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="Compute precision: bfloat16 where the hardware has it (auto), float32, or mixed_bfloat16.",
            show_default="the recipe's for this machine",
        ),
    ] = None,
    widths: Annotated[
        str | None,
        typer.Option(
            help="Filters of each block of the network, comma-separated, e.g. 24,96,96.",
            show_default="the recipe's for this machine",
        ),
    ] = None,
    machine_kind: Annotated[
        MachineKind | None,
        typer.Option(
            help="Size the recipe for this kind of machine instead of this one (to reproduce another's model).",
            show_default="this machine's, from its CPU flags and GPUs",
        ),
    ] = None,
    with_labels: Annotated[
        bool,
        typer.Option(
            "--with-labels",
            help="Train on the data plus every accepted label (`visionflow labels import`), as a dataset of its "
            "own: labelled images join the train split only, so test accuracy stays comparable.",
        ),
    ] = False,
    image_size: ImageSizeOption = None,
    channels: ChannelsOption = None,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest, train, evaluate and register a model; promote it to champion if it passes the gate.

    --dask-address and --dask-workers run ingestion's decoding on a Dask cluster; training runs here.

    The preset's network, precision and epochs suit this machine's kind (see --machine-kind).

    Example, retraining with the labels people gave: visionflow train --data photos --with-labels
    """
    layout = prepare(home, json_output, prefetch=FLOW_PREFETCH)
    from visionflow.flows.ingest import IngestConfig
    from visionflow.flows.train import train_flow

    values = {
        "decode": given(image_size=image_size, channels=channels),
        "dask": given(address=dask_address, workers=dask_workers),
    }
    ingest_config = validated_config(IngestConfig, values, json_output)
    parameters = given(
        data=data, preset=preset, epochs=epochs, seed=seed, distribution=distribution,
        train_on_validation=train_on_validation, with_labels=with_labels or None, precision=precision,
        widths=parsed_widths(widths, json_output), machine_kind=machine_kind,
    )  # fmt: skip
    summary = run_flow(
        lambda: train_flow(**parameters, ingest=ingest_config, home=str(layout.root), return_state=True),
        json_output,
    )
    finish(summary, json_output, train_lines)


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(help="A labelled image folder (<class>/<images>) with the model's classes.")],
    model: Annotated[
        str | None,
        typer.Option(help="'champion' or a registered version such as v0002.", show_default="champion"),
    ] = None,
    compare: Annotated[
        str | None, typer.Option(help="Another registered version to put side by side on the same images.")
    ] = None,
    workers: WorkersOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Evaluate a registered model on a labelled folder: metrics, confusion matrix, and with --compare a second model beside it.

    The folder goes through the same scan, decode and data contracts as training data, every image in the test split.
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    layout = prepare(home, json_output, prefetch=FLOW_PREFETCH)
    from visionflow.flows.evaluate import evaluate_flow
    from visionflow.flows.ingest import IngestConfig

    ingest = IngestConfig.model_validate({"scan": given(workers=workers), "decode": given(workers=workers)})
    parameters = given(model=model, compare=compare)
    summary = run_flow(
        lambda: evaluate_flow(data=data, **parameters, ingest=ingest, home=str(layout.root), return_state=True),
        json_output,
    )
    finish(summary, json_output, evaluate_lines)


@app.command()
def score(
    drop: Annotated[
        str, typer.Argument(metavar="DROP", help="The folder of images to score (any nesting, any mix of files).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="'champion' (the promoted model) or a registered version such as v0002.", show_default="champion"
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per predict call.", show_default="256")] = None,
    engine: EngineOption = None,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Score every file of a drop with a registered model: predictions and rejections as Parquet.

    Each file ends in exactly one row, a prediction or a rejection with its reason. Images the model already scored (in this drop or another) are not scored again.

    Example, decoding and predicting on an existing Dask cluster: visionflow score incoming/today --dask-address tcp://scheduler:8786
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    # On a Dask cluster the workers predict: this process needs no model runtime.
    on_cluster = dask_address is not None or dask_workers is not None
    runtime = () if on_cluster else engine_modules(home, model, engine)
    layout = prepare(home, json_output, prefetch=("great_expectations", *runtime))
    from visionflow.flows.score import ScoringConfig, score_flow

    values = {
        "scan": given(workers=workers),
        "score": given(batch_size=batch_size, workers=workers, engine=engine),
        "dask": given(address=dask_address, workers=dask_workers),
    }
    config = validated_config(ScoringConfig, values, json_output)
    parameters = given(model=model)
    summary = run_flow(
        lambda: score_flow(drop=drop, **parameters, config=config, home=str(layout.root), return_state=True),
        json_output,
    )
    finish(summary, json_output, score_lines)

"""The `visionflow` command line.

Each command runs a Prefect flow and ends with either a short human summary or, with --json,
one JSON object as the last line of stdout; logs go to stderr. Exit codes: 0 done, 1 an
unexpected error, 2 a usage error, 3 a data contract breach, 4 unusable input, 5 busy (another
run holds the drop; try again later).

Heavy libraries (Prefect, pandas, TensorFlow) are imported inside the commands, after
VISIONFLOW_HOME and the offline settings are in place, and so that `--help` answers at once.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="visionflow",
    help="Batch image classification on Prefect: ingest and validate image folders, train, evaluate, score drops.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ImageSizeOption = Annotated[int, typer.Option(help="Height and width, in pixels, every image is resized to.")]
ChannelsOption = Annotated[
    int | None, typer.Option(help="3 for RGB, 1 for grayscale.", show_default="1 for demo, else 3")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")]
HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Where visionflow keeps everything it writes.",
        show_default="$VISIONFLOW_HOME or ./visionflow-home",
    ),
]


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
    image_size: ImageSizeOption = 32,
    channels: ChannelsOption = None,
    max_pixels: Annotated[
        int, typer.Option(help="Largest source width*height accepted (decompression-bomb guard).")
    ] = 50_000_000,
    val_fraction: Annotated[
        float, typer.Option(help="Share of train carved out as validation when the source has no val.")
    ] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Share carved out as test when the source has no test.")] = 0.2,
    workers: Annotated[
        int | None, typer.Option(help="Processes for hashing and decoding.", show_default="one per core")
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Turn a labelled image folder into validated, model-ready Parquet (one file per split)."""
    layout = _prepare(home, json_output)
    from flows.ingest import IngestConfig, ingest_flow

    try:
        config = IngestConfig.model_validate(
            {
                "decode": {"image_size": image_size, "channels": channels, "max_pixels": max_pixels}
                | ({"workers": workers} if workers is not None else {}),
                "scan": {"workers": workers} if workers is not None else {},
                "split": {"val_fraction": val_fraction, "test_fraction": test_fraction},
            }
        )
    except ValueError as error:
        _fail(f"invalid option: {_first_pydantic_error(error)}", 2, json_output)
    summary = _run(lambda: ingest_flow(data=data, config=config, home=str(layout.root), return_state=True), json_output)
    _finish(summary, json_output, _ingest_lines)


def _ingest_lines(summary: dict) -> list[str]:
    """The human summary of an ingest."""
    splits = ", ".join(f"{split} {rows:,}" for split, rows in summary["splits"].items())
    lines = [
        f"ingested {summary['source']}: {summary['files_found']:,} files, {summary['quarantined']:,} quarantined, "
        f"in {summary['seconds']:.1f} s",
        f"classes ({len(summary['classes'])}): {', '.join(summary['classes'])}",
        f"image shape: {'x'.join(str(size) for size in summary['image_shape'])}; splits: {splits}",
        f"dataset {summary['dataset_fingerprint'][:12]} in {summary['dataset_dir']}",
    ]
    for suite, outcome in summary["contracts"].items():
        state = "passed" if outcome["success"] else "FAILED"
        warnings = f" ({len(outcome['warnings'])} warnings)" if outcome["warnings"] else ""
        lines.append(f"contract {suite}: {state}{warnings}")
    for example in summary["quarantine_examples"][:5]:
        lines.append(f"quarantined: {example['path']}: {example['reason']}")
    if summary["quarantined"] > 5:
        lines.append(f"... all {summary['quarantined']} quarantined files are listed in {summary['manifest']}")
    return lines


@app.command()
def train(
    data: Annotated[
        str, typer.Option(help="An image folder, 'cifar10' or 'demo' (ingested first, reusing earlier work).")
    ] = "demo",
    preset: Annotated[
        str, typer.Option(help="Training recipe: 'seed' (the classic Keras CIFAR-10 CNN), 'default', 'tiny'.")
    ] = "default",
    epochs: Annotated[int | None, typer.Option(help="Train for this many epochs instead of the preset's.")] = None,
    image_size: ImageSizeOption = 32,
    channels: ChannelsOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest, train, evaluate and register a model; promote it to champion if it passes the gate."""
    layout = _prepare(home, json_output)
    from flows.ingest import IngestConfig
    from flows.train import train_flow

    try:
        ingest_config = IngestConfig.model_validate({"decode": {"image_size": image_size, "channels": channels}})
    except ValueError as error:
        _fail(f"invalid option: {_first_pydantic_error(error)}", 2, json_output)
    summary = _run(
        lambda: train_flow(
            data=data, preset=preset, epochs=epochs, ingest=ingest_config, home=str(layout.root), return_state=True
        ),
        json_output,
    )
    _finish(summary, json_output, _train_lines)


def _train_lines(summary: dict) -> list[str]:
    """The human summary of a training run."""
    verdict = "promoted to champion" if summary["promoted"] else "registered, not promoted"
    return [
        f"model {summary['model_version']} ({summary['preset']}, {summary['epochs_run']} epochs, "
        f"{summary['train_images_per_second']:,.0f} images/s): test accuracy {summary['test_accuracy']:.4f}, "
        f"macro F1 {summary['macro_f1']:.4f}",
        f"{verdict}: {summary['gate_reason']}",
        f"champion: {summary['champion_version'] or 'none'}; model file {summary['model_path']}",
        f"done in {summary['seconds']:.0f} s",
    ]


@app.command()
def score(
    drop: Annotated[
        Path, typer.Argument(metavar="DROP", help="The folder of images to score (any nesting, any mix of files).")
    ],
    model: Annotated[
        str, typer.Option(help="'champion' (the promoted model) or a registered version such as v0002.")
    ] = "champion",
    batch_size: Annotated[int, typer.Option(help="Images per predict call.")] = 256,
    workers: Annotated[
        int | None, typer.Option(help="Processes for hashing and decoding.", show_default="one per core")
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Score every file of a drop with a registered model: predictions and rejections as Parquet.

    Each file ends in exactly one row, a prediction or a rejection with its reason. Images the model already scored (in this drop or another) are not scored again.
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    layout = _prepare(home, json_output)
    from flows.score import ScoringConfig, score_flow

    parallel = {"workers": workers} if workers is not None else {}
    try:
        config = ScoringConfig.model_validate({"scan": parallel, "score": {"batch_size": batch_size, **parallel}})
    except ValueError as error:
        _fail(f"invalid option: {_first_pydantic_error(error)}", 2, json_output)
    summary = _run(
        lambda: score_flow(drop=str(drop), model=model, config=config, home=str(layout.root), return_state=True),
        json_output,
    )
    _finish(summary, json_output, _score_lines)


def _score_lines(summary: dict) -> list[str]:
    """The human summary of a scoring run."""
    drift = {True: "DRIFT: " + "; ".join(summary["drift_reasons"]), False: "no drift"}.get(
        summary["drifted"], "drift not judged (" + "; ".join(summary["drift_reasons"]) + ")"
    )
    classes = ", ".join(f"{name} {count:,}" for name, count in sorted(summary["class_counts"].items()) if count)
    lines = [
        f"scored drop {summary['drop']} with model {summary['model_version']} in {summary['seconds']:.1f} s "
        f"({summary['images_per_second']:,.0f} images/s)",
        f"files {summary['files']:,}: {summary['scored']:,} scored, {summary['already_scored']:,} already scored, "
        f"{summary['rejected']:,} rejected",
        f"predicted classes: {classes or 'none new'}",
        drift,
    ]
    for example in summary["rejection_examples"]:
        lines.append(f"rejected: {example['path']}: {example['reason']}")
    lines.append(f"predictions: {summary['predictions_path']}")
    lines.append(f"rejections: {summary['rejections_path']}; report: {summary['report_path']}")
    return lines


@app.command()
def serve(
    port: Annotated[
        int, typer.Option(help="Port of the Prefect server and UI (started unless PREFECT_API_URL is set).")
    ] = 4200,
    train_data: Annotated[
        str, typer.Option(help="What scheduled `train` runs train on: a folder, 'cifar10', 'demo'.")
    ] = "demo",
    train_cron: Annotated[str, typer.Option(help="When `train` runs, as a cron expression.")] = "0 3 * * 1",
    score_every: Annotated[int, typer.Option(help="Seconds between scheduled `score-drops` runs.")] = 300,
    settle_seconds: Annotated[
        float, typer.Option(help="A drop without a _READY file is ready after this many quiet seconds.")
    ] = 30.0,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run visionflow as a service: Prefect server and UI, scheduled deployments, the drop inbox.

    Drops put in VISIONFLOW_HOME/drops/inbox/<drop>/ are scored once they are ready and moved to drops/done/ (or drops/failed/). Stop with Ctrl-C or SIGTERM.
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    from deployments.serve import ServeConfig, run_service
    from flows.runtime import configure_environment
    from tasks.errors import VisionflowError

    try:
        config = ServeConfig(
            port=port, train_data=train_data, train_cron=train_cron, score_every_seconds=score_every,
            settle_seconds=settle_seconds,
        )  # fmt: skip
    except ValueError as error:
        _fail(f"invalid option: {_first_pydantic_error(error)}", 2, json_output)
    try:
        layout = configure_environment(home)
    except OSError as error:
        _fail(f"cannot use {error.filename or home} as VISIONFLOW_HOME ({error.strerror})", 4, json_output)

    def announce(api_url: str) -> None:
        ready = {"api_url": api_url, "ui_url": api_url.removesuffix("/api"), "inbox": str(layout.drops / "inbox"),
                 "deployments": ["train", "score-drops", "score", "ingest"]}  # fmt: skip
        if json_output:
            typer.echo(json.dumps(ready))
        else:
            typer.echo(f"visionflow is serving: UI at {ready['ui_url']}; drop folders into {ready['inbox']}")
            typer.echo("deployments: train (cron " + train_cron + f"), score-drops (every {score_every} s and on "
                       "each ready drop), score, ingest; Ctrl-C stops")  # fmt: skip

    try:
        run_service(layout, config, on_started=lambda _url: _configure_logging(), on_ready=announce)
    except VisionflowError as error:
        _fail(str(error), error.exit_code, json_output)
    except KeyboardInterrupt:
        pass
    typer.echo(json.dumps({"stopped": True}) if json_output else "visionflow stopped")


def _prepare(home: Path | None, json_output: bool):
    """Set up VISIONFLOW_HOME and the offline environment, then Prefect's logging."""
    from flows.runtime import configure_environment

    try:
        layout = configure_environment(home)
    except OSError as error:
        _fail(
            f"cannot use {error.filename or home} as VISIONFLOW_HOME ({error.strerror}); choose a writable --home",
            4,
            False,
        )
    _configure_logging()
    return layout


def _configure_logging() -> None:
    """Run logs at INFO on stderr, Prefect's own start-up chatter off, no tracebacks for user errors."""
    from prefect.logging.configuration import ensure_logging_setup

    from tasks.errors import VisionflowError

    ensure_logging_setup()  # Prefect configures logging lazily; do it now so the changes below stick.

    logging.getLogger("prefect").setLevel(logging.WARNING)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.INFO)

    class HideUserErrorTracebacks(logging.Filter):
        """Errors a user can act on are reported in one message; their tracebacks only add noise."""

        def filter(self, record: logging.LogRecord) -> bool:
            if record.exc_info and isinstance(record.exc_info[1], VisionflowError):
                record.exc_info = None
                record.exc_text = None
            return True

    handlers = {
        handler
        for logger in [
            logging.getLogger(),
            *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)),
        ]
        for handler in getattr(logger, "handlers", [])
    }
    for handler in handlers:
        handler.addFilter(HideUserErrorTracebacks())


def _run(start_flow, json_output: bool) -> Any:
    """Run a flow and return its result, or exit with the code and one-line reason of its error."""
    from tasks.errors import VisionflowError

    try:
        state = start_flow()
    except Exception as error:  # The flow never started: the Prefect server could not be reached.
        _fail(
            f"could not start the flow run ({type(error).__name__}: {error}); is PREFECT_API_URL reachable?",
            1,
            json_output,
        )
    result = state.result(raise_on_failure=False)
    _drain_prefect_workers()
    if isinstance(result, VisionflowError):
        _fail(str(result), result.exit_code, json_output)
    if isinstance(result, BaseException):
        _fail(f"unexpected error: {type(result).__name__}: {result} (the log above has the details)", 1, json_output)
    return result


def _drain_prefect_workers() -> None:
    """Send Prefect's queued events and logs now, so its exit-time notices do not follow the
    command's own last line."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception:  # Delivery of telemetry must never change the command's outcome.
            continue


def _finish(summary: dict, json_output: bool, human_lines) -> None:
    if json_output:
        typer.echo(json.dumps(summary, default=str))
    else:
        typer.echo("\n".join(human_lines(summary)))


def _fail(message: str, exit_code: int, json_output: bool) -> None:
    """Report an error as the last word: a one-line reason on stderr (and JSON on stdout with --json)."""
    if json_output:
        typer.echo(json.dumps({"error": message, "exit_code": exit_code}))
    first_line, _, rest = message.partition("\n")
    typer.echo(f"visionflow: {first_line}" + (f"\n{rest}" if rest else ""), err=True)
    raise typer.Exit(exit_code)


def _first_pydantic_error(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return str(error)


if __name__ == "__main__":
    sys.exit(app())

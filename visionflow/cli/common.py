"""Shared parts of the `visionflow` command line: the app, common options, running a flow, output.

Each command runs a Prefect flow and ends with either a short human summary or, with --json,
one JSON object as the last line of stdout; logs go to stderr. Exit codes: 0 done, 1 an
unexpected error, 2 a usage error, 3 a data contract breach, 4 unusable input, 5 busy (another
run holds the drop; try again later), 6 damaged state (the message says which file and how to
recover), 7 the disk is full, 8 the approval gate refused a promotion, 9 a shared database (the
PostgreSQL scoring ledger) cannot be reached.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
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

# Options that mirror a config field default to None and are passed on only when given (see
# `given`), so the config holds each default; show_default repeats it for --help only, and
# tests/visionflow/cli/test_defaults.py checks that the two agree.
ImageSizeOption = Annotated[
    int | None, typer.Option(help="Height and width, in pixels, every image is resized to.", show_default="32")
]
ChannelsOption = Annotated[
    int | None, typer.Option(help="3 for RGB, 1 for grayscale.", show_default="1 for demo, else 3")
]
WorkersOption = Annotated[
    int | None, typer.Option(help="Processes for hashing and decoding.", show_default="one per core")
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(
        help="Run the decode (and predict) shards on an existing Dask cluster, e.g. tcp://scheduler:8786.",
        show_default="no cluster",
    ),
]
DaskWorkersOption = Annotated[
    int | None,
    typer.Option(help="Start a local Dask cluster of this many worker processes for the shards.", show_default="none"),
]
EngineOption = Annotated[
    str | None,
    typer.Option(
        help="What predicts: auto (the fastest export that passed its parity check, else keras), keras, onnx, "
        "openvino, onnx-int8 or openvino-int8.",
        show_default="auto",
    ),
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


def engine_modules(home: Path | None, model: str | None, engine: str | None) -> tuple[str, ...]:
    """The runtime a score of `model` on `engine` will import, read from the registry: nothing when
    that cannot be told here (the flow then reports the problem), Keras for a first-use export."""
    from visionflow.engines.engine_exports import AUTO, KERAS
    from visionflow.engines.runtimes import RUNTIME_MODULES
    from visionflow.home import resolve_home
    from visionflow.models.registry import CHAMPION, find_model
    from visionflow.models.scoring_model import resolve_engine

    try:
        record = find_model(resolve_home(home).models, model or CHAMPION)
        if engine != KERAS and record.exports is None:
            return ("keras",)
        return (RUNTIME_MODULES[resolve_engine(record, engine or AUTO)],)
    except Exception:  # The flow finds the model again and says what is wrong, where it matters.
        return ()


# The command's own temporary Prefect server, when PREFECT_API_URL did not name one.
_TEMPORARY_SERVER = None
# The thread importing the flow's heavy modules ahead of use, when the command asked for one.
_PREFETCH = None


def prepare(home: Path | None, json_output: bool, prefetch: tuple[str, ...] = ()):
    """Set up VISIONFLOW_HOME and the offline environment, then Prefect's logging.

    prefetch names modules the command's flow will import (TensorFlow takes about 5 s, Great
    Expectations about 3 s): they start importing now, while Prefect is imported and its temporary
    server starts, instead of one after another later. Great Expectations is imported in a worker
    process where the command's validations then run (data_contracts/gx_validation.py), the
    others on a background thread.
    """
    from visionflow.home import configure_environment
    from visionflow.models.champion import record_command
    from visionflow.processes.reaper import start_reaper
    from visionflow.processes.temporary_server import start_temporary_server

    try:
        layout = configure_environment(home)
    except OSError as error:
        fail(
            f"cannot use {error.filename or home} as VISIONFLOW_HOME ({error.strerror}); choose a writable --home",
            4,
            False,
        )
    record_command()  # Records of who did what (the champion history) name the command behind a run.
    start_reaper()  # Whatever this command starts ends with it, even after a SIGKILL.
    global _TEMPORARY_SERVER
    _TEMPORARY_SERVER = start_temporary_server()  # Boots while the imports below run.
    if "great_expectations" in prefetch:
        # In a process of its own: an import on a thread here would hold the interpreter lock
        # against the other imports.
        from visionflow.data_contracts.gx_validation import start_validation_process

        start_validation_process()
        prefetch = tuple(module for module in prefetch if module != "great_expectations")
    if prefetch:
        # Not a daemon: a command that fails early then waits for the import to finish before the
        # interpreter shuts down. Shutting down under a half-imported TensorFlow aborts the process
        # ("terminate called without an active exception") and loses the command's exit code.
        global _PREFETCH
        _PREFETCH = threading.Thread(target=_import_quietly, args=(prefetch,), name="visionflow-prefetch")
        _PREFETCH.start()
    configure_logging()
    return layout


def _import_quietly(modules: tuple[str, ...]) -> None:
    """Import modules ahead of use; a failure here is left for the real import to report."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # The flow imports it again and reports the problem where it matters.
            return


def configure_logging() -> None:
    """Run logs at INFO on stderr, Prefect's own start-up chatter off, no tracebacks for user errors."""
    from prefect.logging.configuration import ensure_logging_setup

    from visionflow.errors import VisionflowError

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


def run_flow(start_flow, json_output: bool) -> Any:
    """Run a flow and return its result, or exit with the code and one-line reason of its error."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from visionflow.errors import VisionflowError

    try:
        if _TEMPORARY_SERVER is not None:
            _TEMPORARY_SERVER.wait_until_healthy()
        # A command runs its flow in this process, so flow-run heartbeats (which let a server
        # automation mark runs of vanished workers as crashed) add nothing here, and joining
        # their thread costs up to a second at the end of every flow run and subflow.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = start_flow()
    except Exception as error:  # The flow never started: the Prefect server could not be reached.
        fail(
            f"could not start the flow run ({type(error).__name__}: {error}); is PREFECT_API_URL reachable?",
            1,
            json_output,
        )
    result = state.result(raise_on_failure=False)
    drain_prefect_workers()
    if isinstance(result, VisionflowError):
        fail(str(result), result.exit_code, json_output)
    if isinstance(result, BaseException):
        fail(f"unexpected error: {type(result).__name__}: {result} (the log above has the details)", 1, json_output)
    return result


def drain_prefect_workers() -> None:
    """Send Prefect's queued events and logs now, so its exit-time notices do not follow the
    command's own last line."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception:  # Delivery of telemetry must never change the command's outcome.
            continue


def finish(summary, json_output: bool, human_lines) -> None:
    """Print a command's result: one JSON object with --json, else the lines human_lines makes of it.

    A typed result (a pydantic model) prints its fields in JSON form; human_lines gets it as it is.
    """
    if json_output:
        fields = summary.model_dump(mode="json") if hasattr(summary, "model_dump") else summary
        typer.echo(json.dumps(fields, default=str))
    else:
        typer.echo("\n".join(human_lines(summary)))


def fail(message: str, exit_code: int, json_output: bool) -> None:
    """Report an error as the last word: a one-line reason on stderr (and JSON on stdout with --json)."""
    if _PREFETCH is not None:
        _PREFETCH.join()  # What the imports print (TensorFlow's start-up lines) comes before the reason.
    if json_output:
        typer.echo(json.dumps({"error": message, "exit_code": exit_code}))
    first_line, _, rest = message.partition("\n")
    typer.echo(f"visionflow: {first_line}" + (f"\n{rest}" if rest else ""), err=True)
    raise typer.Exit(exit_code)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (those not None), for a config or flow that holds the defaults."""
    return {name: value for name, value in options.items() if value is not None}


def validated_config(model, values: dict, json_output: bool):
    """model (a pydantic config class) built from values, or exit 2 naming the first invalid option."""
    from visionflow.errors import first_validation_problem

    try:
        return model.model_validate(values)
    except ValueError as error:
        fail(f"invalid option: {first_validation_problem(error)}", 2, json_output)

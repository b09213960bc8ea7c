"""The service commands of `visionflow`: serve (this machine as a service) and deploy (a team server)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from visionflow.cli.common import (
    HomeOption,
    JsonOption,
    app,
    configure_logging,
    fail,
    finish,
    given,
    prepare,
    validated_config,
)
from visionflow.deployments.settings import DEPLOYMENT_NAMES, ServeConfig
from visionflow.home import BUILT_IN_SOURCES
from visionflow.models.champion import record_command


def _default(field: str) -> str:
    """ServeConfig's default of field, as --help shows it: the config states each default once."""
    return str(ServeConfig.model_fields[field].default)


# Options serve and deploy share: how the scheduled deployments are set up. Each defaults to
# None and is passed on only when given, so ServeConfig's default applies otherwise.
TrainDataOption = Annotated[
    str | None,
    typer.Option(
        help="What scheduled `train` runs train on: a folder, 'cifar10', 'demo'.", show_default=_default("train_data")
    ),
]
TrainCronOption = Annotated[
    str | None, typer.Option(help="When `train` runs, as a cron expression.", show_default=_default("train_cron"))
]
ScoreEveryOption = Annotated[
    int | None,
    typer.Option(help="Seconds between scheduled `score-drops` runs.", show_default=_default("score_every_seconds")),
]
ScoreEngineOption = Annotated[
    str | None,
    typer.Option(
        help="The engine `score-drops` and `score` runs predict on: auto, keras, onnx, openvino, onnx-int8, "
        "openvino-int8.",
        show_default="auto",
    ),
]


@app.command()
def serve(
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the Prefect server and UI (started unless PREFECT_API_URL is set).",
            show_default=_default("port"),
        ),
    ] = None,
    train_data: TrainDataOption = None,
    train_cron: TrainCronOption = None,
    score_every: ScoreEveryOption = None,
    score_engine: ScoreEngineOption = None,
    settle_seconds: Annotated[
        float | None,
        typer.Option(
            help="A drop without a _READY file is ready after this many quiet seconds.",
            show_default=_default("settle_seconds"),
        ),
    ] = None,
    allow_root: Annotated[
        list[Path] | None,
        typer.Option(
            help="A folder runs from the deployments may read data or drops from (repeatable).",
            show_default="the drop folders and --train-data",
        ),
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run visionflow as a service: Prefect server and UI, scheduled deployments, the drop inbox.

    Drops put in VISIONFLOW_HOME/drops/inbox/<drop>/ are scored once they are ready and moved to drops/done/ (or drops/failed/). Stop with Ctrl-C or SIGTERM.
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    from visionflow.deployments.serve import run_service
    from visionflow.errors import VisionflowError
    from visionflow.home import configure_environment
    from visionflow.processes.reaper import start_reaper

    roots = [str(root) for root in allow_root] if allow_root else None
    values = given(port=port, train_data=train_data, train_cron=train_cron, score_every_seconds=score_every,
                   settle_seconds=settle_seconds, allowed_roots=roots, score_engine=score_engine)  # fmt: skip
    config = validated_config(ServeConfig, values, json_output)
    if config.train_data not in BUILT_IN_SOURCES and not Path(config.train_data).expanduser().is_dir():
        # Scheduled training would fail week after week; a folder on another machine is `deploy`'s case.
        fail(f"--train-data {config.train_data}: no such folder here, and not 'cifar10' or 'demo'", 4, json_output)
    try:
        layout = configure_environment(home)
    except OSError as error:
        fail(f"cannot use {error.filename or home} as VISIONFLOW_HOME ({error.strerror})", 4, json_output)

    def announce(api_url: str) -> None:
        ready = {"api_url": api_url, "ui_url": api_url.removesuffix("/api"), "inbox": str(layout.drops / "inbox"),
                 "deployments": list(DEPLOYMENT_NAMES)}  # fmt: skip
        if json_output:
            typer.echo(json.dumps(ready))
        else:
            typer.echo(f"visionflow is serving: UI at {ready['ui_url']}; drop folders into {ready['inbox']}")
            every = config.score_every_seconds
            schedules = f"train (cron {config.train_cron}), score-drops (every {every} s and when drops are ready)"
            typer.echo(f"deployments: {schedules}, score, review, ingest, evaluate, promote, rollback; Ctrl-C stops")

    record_command()  # Served runs record who started them.
    start_reaper()  # The server and the flow runs it starts end with it, even after a SIGKILL.
    try:
        run_service(layout, config, on_started=lambda _url: configure_logging(), on_ready=announce)
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    except KeyboardInterrupt:
        pass
    typer.echo(json.dumps({"stopped": True}) if json_output else "visionflow stopped")


@app.command()
def deploy(
    pool: Annotated[
        str, typer.Option(help="Work pool the deployments run on (a process pool is created if absent).")
    ] = "visionflow",
    train_data: TrainDataOption = None,
    train_cron: TrainCronOption = None,
    score_every: ScoreEveryOption = None,
    score_engine: ScoreEngineOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register the deployments with the Prefect server at PREFECT_API_URL and a work pool, for remote workers."""  # noqa: E501
    if not os.environ.get("PREFECT_API_URL"):
        fail(
            "PREFECT_API_URL is not set: point it at the shared Prefect server, e.g. http://host:4200/api",
            2,
            json_output,
        )
    values = given(train_data=train_data, train_cron=train_cron, score_every_seconds=score_every,
                   score_engine=score_engine)  # fmt: skip
    config = validated_config(ServeConfig, values, json_output)
    prepare(None, json_output)
    from visionflow.deployments.deploy import deploy_to_pool
    from visionflow.errors import VisionflowError

    try:
        ids = deploy_to_pool(pool, config)
    except VisionflowError as error:  # A setting the deployments cannot take, such as a bad cron.
        fail(str(error), error.exit_code, json_output)
    except Exception as error:  # The server refused or could not be reached: say which and stop.
        fail(f"could not register the deployments on {os.environ['PREFECT_API_URL']}: {error}", 1, json_output)
    summary = {"pool": pool, "api_url": os.environ["PREFECT_API_URL"], "deployment_ids": ids}
    finish(summary, json_output, _deploy_lines)


def _deploy_lines(summary: dict) -> list[str]:
    """The human summary of a deploy."""
    return [
        f"registered {len(summary['deployment_ids'])} deployments ({', '.join(DEPLOYMENT_NAMES)}) "
        f"with work pool {summary['pool']} on {summary['api_url']}",
        f"start a worker on each machine with visionflow installed: prefect worker start --pool {summary['pool']}",
    ]

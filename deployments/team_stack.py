"""`python -m visionflow.deployments.team_stack up|down|status`: Prefect in high availability on one machine.

The self-hosted layout Prefect documents for several servers, bound to 127.0.0.1: PostgreSQL,
Redis, two API servers without services behind HAProxy, the background services on their own,
then `visionflow deploy` through the balancer, process workers on its pool (one, or --workers N)
and the inbox watcher of `visionflow serve`. `up` starts whatever is not running (run it again to
bring back a lost API server), `down` stops everything it recorded and checks that nothing is
left, `status` tells what runs and answers. docs/SCALING.md#high-availability shows it at work.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from visionflow.deployments import team_stack_pieces as pieces
from visionflow.deployments.team_stack_config import TeamStackConfig, check_tools
from visionflow.deployments.team_stack_processes import (
    StackState,
    is_running,
    port_in_use,
    stop_process,
    wait_for_ports_free,
)
from visionflow.deployments.team_stack_workers import deploy, start_worker
from visionflow.errors import VisionflowError, first_validation_problem
from visionflow.home import OFFLINE_DEFAULTS, resolve_home

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])
HomeOption = Annotated[Path | None, typer.Option(help="The team's VISIONFLOW_HOME.", show_default="$VISIONFLOW_HOME")]
StateOption = Annotated[
    Path | None, typer.Option(help="Where the stack keeps its databases, logs and pids.", show_default="HOME/team")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")]


class PieceReport(BaseModel):
    """What happened to one piece, or how it is."""

    name: str
    state: str  # up: started or running; down: stopped, killed or not running; status: running or not running.
    pid: int | None = None
    port: int | None = None
    healthy: bool | None = None
    seconds: float | None = None  # How long it took to start or stop.


class StackReport(BaseModel):
    """The outcome of a command on the stack."""

    ok: bool
    api_url: str
    ui_url: str
    pool: str
    inbox: str
    state: str
    pieces: list[PieceReport]
    seconds: float
    left_running: list[int] = []  # down: pids still alive after it (should be none).
    ports_taken: list[int] = []  # down: the stack's ports still answering (should be none).


def stack_config(home: Path | None, state: Path | None, given: dict | None = None) -> TeamStackConfig:
    """The saved config of the state folder, with the options given on top; prepared for Prefect."""
    root = resolve_home(home).root
    folder = (state or root / "team").expanduser().resolve()
    saved = folder / "config.json"
    values = json.loads(saved.read_text()) if saved.exists() else {}
    config = TeamStackConfig.model_validate({**values, "home": root, "state": folder, **(given or {})})
    # Prefect is imported by this process only after these are set: it reads them once, on import.
    os.environ["PREFECT_HOME"] = str(config.state / "prefect" / "cli")
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return config


def bring_up(config: TeamStackConfig) -> list[PieceReport]:
    """Start every piece that is not running, in order, each once the ones it needs are ready."""
    check_tools()
    state = StackState.load(config.state_file)
    running = {name for name, item in state.processes.items() if is_running(item)}
    saved = config.state / "config.json"
    if running and saved.exists() and json.loads(saved.read_text())["base_port"] != config.base_port:
        raise VisionflowError(f"the stack in {config.state} runs on other ports: run `down` first")
    if surplus := sorted(running - set(config.pieces)):
        raise VisionflowError(f"the stack in {config.state} runs {', '.join(surplus)}: run `down` first for fewer")
    for name, port in config.ports().items():
        if name not in running and port_in_use(port):
            raise VisionflowError(f"port {port} ({name}) is in use on 127.0.0.1: choose another --base-port")
    config.state.mkdir(parents=True, exist_ok=True)
    saved.write_text(config.model_dump_json(indent=2, exclude={"home", "state"}))
    reports: list[PieceReport] = []

    def ensure(names: list[str], start, before=None) -> None:
        """Report the pieces named that run; start the others one by one, after before() if given.

        A piece's seconds count from the end of the one before, so they include before()."""
        stopped = [name for name in names if name not in running]
        began = time.monotonic()
        if stopped and before:
            before()
        for name in names:
            if name in running:
                item = state.processes[name]
                reports.append(PieceReport(name=name, state="running", pid=item.pid, port=item.port))
                continue
            item = start(name)
            state.processes[name] = item
            state.save(config.state_file)
            reports.append(PieceReport(name=name, state="started", pid=item.pid, port=item.port,
                                       seconds=round(time.monotonic() - began, 1)))  # fmt: skip
            began = time.monotonic()

    ensure(["postgres"], lambda _: pieces.start_postgres(config))
    ensure(["redis"], lambda _: pieces.start_redis(config))
    ensure(
        ["api-1", "api-2"],
        lambda name: pieces.start_api_server(config, int(name.removeprefix("api-"))),
        before=lambda: pieces.migrate_prefect_database(config),
    )
    ensure(["services"], lambda _: pieces.start_services(config))
    ensure(["balancer"], lambda _: pieces.start_balancer(config))
    ensure(config.worker_pieces, lambda name: start_worker(config, name), before=lambda: deploy(config))
    ensure(["inbox-watcher"], lambda _: pieces.start_inbox_watcher(config))
    return reports


def take_down(config: TeamStackConfig) -> tuple[list[PieceReport], list[int], list[int]]:
    """Stop every recorded piece, the last started first.

    Returns the reports, the pids still alive afterwards, and the ports of every recorded piece.
    """
    state = StackState.load(config.state_file)
    ports = [item.port for item in state.processes.values() if item.port]
    reports, left = [], []
    for name in reversed([*config.pieces, *(name for name in state.processes if name not in config.pieces)]):
        item = state.processes.get(name)
        if not is_running(item):
            reports.append(PieceReport(name=name, state="not running"))
            state.processes.pop(name, None)
            continue
        started = time.monotonic()
        if name == "postgres":
            killed, alive = pieces.stop_postgres(config, item)
        else:
            killed, alive = stop_process(item, second_sigterm=name.startswith("worker"))
        left += alive
        reports.append(PieceReport(name=name, state="killed" if killed else "stopped", pid=item.pid, port=item.port,
                                   seconds=round(time.monotonic() - started, 1)))  # fmt: skip
        state.processes.pop(name)
        state.save(config.state_file)
    state.save(config.state_file)
    return list(reversed(reports)), left, ports


def report(config: TeamStackConfig, reports: list[PieceReport], started: float, **extra) -> StackReport:
    ok = extra.pop("ok", True)
    return StackReport(ok=ok, api_url=config.api_url, ui_url=config.api_url.removesuffix("/api"), pool=config.pool,
                       inbox=str(config.layout.drops / "inbox"), state=str(config.state), pieces=reports,
                       seconds=round(time.monotonic() - started, 1), **extra)  # fmt: skip


def emit(summary: StackReport, json_output: bool, headline: str) -> None:
    """Print the report: one JSON line, or a headline and one line per piece."""
    if json_output:
        typer.echo(summary.model_dump_json())
        return
    typer.echo(headline)
    for piece in summary.pieces:
        where = f"127.0.0.1:{piece.port}" if piece.port else ""
        pid = f"pid {piece.pid}" if piece.pid else ""
        took = f"{piece.seconds} s" if piece.seconds is not None else ""
        health = {True: "healthy", False: "NOT ANSWERING", None: ""}[piece.healthy]
        typer.echo(f"  {piece.name:<14}{piece.state:<12}{pid:<12}{where:<17}{took:<9}{health}".rstrip())


def fail(message: str, json_output: bool, exit_code: int = 1) -> None:
    if json_output:
        typer.echo(json.dumps({"error": message, "exit_code": exit_code}))
    typer.echo(f"team stack: {message}", err=True)
    raise typer.Exit(exit_code)


@app.command()
def up(
    home: HomeOption = None,
    state: StateOption = None,
    base_port: Annotated[
        int | None,
        typer.Option(help="The balancer's port; the next four are the APIs, Redis, PostgreSQL.", show_default="4200"),
    ] = None,  # fmt: skip
    pool: Annotated[str | None, typer.Option(help="The work pool.", show_default="visionflow")] = None,
    workers: Annotated[int | None, typer.Option(help="Process workers on the pool.", show_default="1")] = None,
    settle_seconds: Annotated[float | None, typer.Option(help="Quiet seconds before a drop is ready.")] = None,
    allow_root: Annotated[list[Path] | None, typer.Option(help="A folder runs may read (repeatable).")] = None,
    deploy_option: Annotated[
        list[str] | None, typer.Option(help="An option for `visionflow deploy`, e.g. '--score-every=600'.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Start PostgreSQL, Redis, two API servers, the services, HAProxy, deploy, the workers and the inbox watcher."""
    started = time.monotonic()
    given = {"base_port": base_port, "pool": pool, "workers": workers, "settle_seconds": settle_seconds,
             "deploy_options": deploy_option,
             "allowed_roots": [root.expanduser().resolve() for root in allow_root] if allow_root else None}  # fmt: skip
    try:
        config = stack_config(home, state, {key: value for key, value in given.items() if value is not None})
        reports = bring_up(config)
    except (VisionflowError, ValueError) as error:
        # An option out of range (a ValueError from the config's validation) is exit 2, as in every
        # visionflow command; a stack that cannot come up keeps its error's own code.
        fail(first_validation_problem(error).splitlines()[0], json_output, getattr(error, "exit_code", 2))
    summary = report(config, reports, started)
    emit(summary, json_output, f"team stack up in {summary.seconds} s: API and UI at {summary.ui_url} (2 API "
                               f"servers behind HAProxy), workers on pool {config.pool}: {config.workers}")  # fmt: skip
    if not json_output:
        typer.echo(f"drop folders into {summary.inbox}; logs in {config.logs}; stop with `make team-down`")


@app.command()
def down(home: HomeOption = None, state: StateOption = None, json_output: JsonOption = False) -> None:
    """Stop every piece of the stack and check that no process is left and every port is free. Data is kept."""
    started = time.monotonic()
    config = stack_config(home, state)
    reports, left, ports = take_down(config)
    taken = wait_for_ports_free(ports)
    summary = report(config, reports, started, ok=not left and not taken, left_running=left, ports_taken=taken)
    freed = f"; ports {', '.join(str(port) for port in ports)} free" if ports else ""
    verdict = f"nothing left running{freed}" if summary.ok else f"STILL RUNNING: pids {left}, ports {taken}"
    emit(summary, json_output, f"team stack down in {summary.seconds} s: {verdict}")
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def status(home: HomeOption = None, state: StateOption = None, json_output: JsonOption = False) -> None:
    """Show which pieces run and answer; exit status 1 unless all of them do."""
    started = time.monotonic()
    config = stack_config(home, state)
    processes = StackState.load(config.state_file).processes
    reports = []
    for name in config.pieces:
        item = processes.get(name)
        if not is_running(item):
            reports.append(PieceReport(name=name, state="not running", healthy=False))
            continue
        healthy = pieces.healthy(config, item)
        reports.append(PieceReport(name=name, state="running", pid=item.pid, port=item.port, healthy=healthy))
    summary = report(config, reports, started, ok=all(piece.healthy for piece in reports))
    emit(summary, json_output, f"team stack {'up' if summary.ok else 'NOT fully up'}: API at {summary.api_url}")
    if not summary.ok:
        raise typer.Exit(1)


@app.command("inbox-watcher", hidden=True)
def inbox_watcher(
    home: Annotated[Path, typer.Option()],
    ready_file: Annotated[Path, typer.Option()],
    settle_seconds: Annotated[float, typer.Option()] = 30.0,
    poll_seconds: Annotated[float, typer.Option()] = 2.0,
) -> None:
    """Run the inbox watcher alone against PREFECT_API_URL until SIGTERM (started by `up`)."""
    from visionflow.home import configure_environment

    layout = configure_environment(home)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from visionflow.deployments.inbox_watcher import InboxWatcher
    from visionflow.ledger.inbox import DropFolders, InboxConfig
    from visionflow.processes.temporary_server import answers_health_check

    if not answers_health_check(os.environ["PREFECT_API_URL"]):
        fail(f"no Prefect API answers at {os.environ['PREFECT_API_URL']}", False)
    stopping = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stopping.set())
    watcher = InboxWatcher(DropFolders(layout.drops), InboxConfig(settle_seconds=settle_seconds), poll_seconds)
    watcher.start()
    ready_file.write_text(str(os.getpid()))
    while not stopping.wait(1.0):
        pass
    watcher.stop()
    watcher.join(timeout=10)


if __name__ == "__main__":
    app()

"""Shards of work on a Dask cluster, as Prefect tasks on prefect-dask's DaskTaskRunner.

Ingest's decode stage and scoring's decode-and-predict can run their shards (a few hundred to a
few thousand images each, never a task per image) on an existing Dask cluster (`address`) or on a
local cluster of worker processes started for the run (`workers`). With neither set, the stages
keep their single-machine path and this module never imports Dask.

A shard task receives paths, a model record and settings, never a loaded model or a connection,
and returns small records; only the calling flow process writes files and commits the ledger. So a
shard that Dask runs twice (a worker lost mid-task) is still written once, and the workers need
read access to the images and the registry but no write access anywhere.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, model_validator

from visionflow.errors import BadInputError
from visionflow.models.registry import ModelRecord
from visionflow.models.scoring_model import load_scoring_model
from visionflow.run_context import run_logger

# Most decoded pixel bytes one shard holds on a worker, in bytes (64 MiB): 21,845 CIFAR-sized
# images, 445 at 224x224 RGB.
SHARD_BYTES = 64 * 1024 * 1024


class DaskConfig(BaseModel):
    """Where shards run: an existing Dask cluster, a local one, or (the default) this machine's pool."""

    address: str | None = None  # Scheduler of an existing cluster, e.g. tcp://scheduler:8786; None: no cluster.
    workers: int | None = Field(default=None, ge=1)  # Start a local cluster of this many worker processes.
    # Images per scoring shard task (decode and predict), at most SHARD_BYTES of decoded pixels. A
    # shard costs 0.1-0.26 s of a worker's time in Prefect and Dask bookkeeping (docs/BENCHMARKS.md,
    # *Dask*), so shards of thousands of small images keep that to a tenth to a quarter of the work.
    files_per_shard: int = Field(default=4096, ge=1)

    @model_validator(mode="after")
    def _one_cluster(self) -> DaskConfig:
        if self.address and self.workers:
            raise ValueError("give either dask.address (an existing cluster) or dask.workers (a local one), not both")
        return self

    connect_timeout_seconds: float = Field(default=30.0, gt=0)  # How long to try reaching the scheduler.

    def files_per_shard_of(self, pixel_bytes: int) -> int:
        """Images per shard for images of pixel_bytes each: files_per_shard, capped at SHARD_BYTES."""
        return max(1, min(self.files_per_shard, SHARD_BYTES // pixel_bytes))

    @property
    def enabled(self) -> bool:
        """True when shards go to a Dask cluster instead of this machine's worker pool."""
        return bool(self.address or self.workers)


@task(name="shard", cache_policy=NO_CACHE, persist_result=False, log_prints=False)
def run_shard(function: Callable[..., Any], chunk: Any, extra_arguments: tuple) -> Any:
    """Prefect task run on a Dask worker: one shard of a stage's work."""
    return function(chunk, *extra_arguments)


def map_shards(
    name: str,
    function: Callable[..., Any],
    chunks: Sequence[Any],
    extra_arguments: tuple,
    config: DaskConfig,
    on_progress: Callable[[int, int, float], None] | None = None,
    max_in_flight: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (chunk index, function(chunk, *extra_arguments)) as shard tasks finish on the cluster.

    Each chunk is one Prefect task run named "<name>-shard". max_in_flight bounds the shards
    submitted but not yet yielded (None: twice the cluster's worker count), so results wait in
    this process's memory only that many at a time.
    """
    from distributed import as_completed

    runner = cluster_runner(config)
    shard_task = run_shard.with_options(name=f"{name}-shard")
    window = max_in_flight or 2 * max(1, len(runner.client.scheduler_info().get("workers", {})))
    started = time.perf_counter()
    pending = iter(enumerate(chunks))
    futures: dict = {}
    tracker = as_completed(loop=runner.client.loop)

    def submit_next() -> None:
        item = next(pending, None)
        if item is None:
            return
        index, chunk = item
        parameters = {"function": function, "chunk": chunk, "extra_arguments": extra_arguments}
        future = runner.submit(shard_task, parameters)
        futures[future.wrapped_future] = (index, future)
        tracker.add(future.wrapped_future)

    for _ in range(min(window, len(chunks))):
        submit_next()
    try:
        with reported_worker_losses(runner.client, name):
            for done, finished in enumerate(tracker, start=1):
                index, future = futures.pop(finished)
                result = future.result()
                submit_next()
                yield index, result
                if on_progress:
                    on_progress(done, len(chunks), time.perf_counter() - started)
    finally:
        # A stage that stopped early (a failed shard, a full disk) leaves no work on a shared cluster.
        for wrapped in futures:
            wrapped.cancel()


@contextlib.contextmanager
def reported_worker_losses(client, name: str) -> Iterator[None]:
    """Log, while a stage's shards run, each worker the scheduler loses or gains.

    The scheduler tells its clients when it removes a worker (a killed process at once; a host cut
    off once its TCP connection times out, distributed.comm.timeouts.tcp: docs/SCALING.md) and
    gives that worker's shards to the others. Without these lines a run would only seem to stall.
    """
    log = run_logger(__name__)  # Taken here, in the run: the events arrive on the client's own thread.

    def on_event(event: tuple[float, dict]) -> None:
        message = event[1]
        if message.get("action") == "remove-worker" and not message.get("expected"):
            again = len(message.get("processing-tasks", ())) + len(message.get("lost-computed-tasks", ()))
            log.warning(
                "Dask worker %s left the cluster during the %s shards; the %d shards it held run again on the others",
                message.get("worker"), name, again,
            )  # fmt: skip
        elif message.get("action") == "add-worker":
            log.info("Dask worker %s joined the cluster during the %s shards", message.get("worker"), name)

    client.subscribe_topic("all", on_event)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # A client already closed has nothing to unsubscribe.
            client.unsubscribe_topic("all")


def warm_up_workers(config: DaskConfig, record: ModelRecord | None = None) -> int:
    """Start or reach the cluster and ready every worker: Prefect's task engine imported and, given a
    model record, that model loaded. Returns how many workers there are."""
    client = cluster_runner(config).client
    workers = list(client.scheduler_info().get("workers", {}))
    client.gather([client.submit(ready_worker, record, workers=[address], pure=False) for address in workers])
    return len(workers)


def ready_worker(record: ModelRecord | None) -> None:
    """Run on one worker: what every shard needs first, paid before the shards arrive."""
    import prefect.task_engine  # noqa: F401  (it runs each shard's task run)

    if record is not None:
        load_scoring_model(record)


@task(name="start-dask-cluster", cache_policy=NO_CACHE, persist_result=False)
def start_cluster_task(config: DaskConfig, record: ModelRecord | None = None) -> int:
    """Prefect task, submitted at a flow's start: the cluster starts (and its workers load the model)
    while the flow lists its files. A failure is only logged here: the stage that needs the cluster
    tries again and stops with the error."""
    try:
        workers = warm_up_workers(config, record)
    except Exception as error:
        run_logger(__name__).warning("the Dask cluster is not ready: %s", error)
        return 0
    run_logger(__name__).info("Dask cluster ready: %d workers%s", workers, " with the model loaded" if record else "")
    return workers


# One runner (and its cluster or connection) per setting, kept for the life of this process: a
# score-drops run scores drop after drop, and starting a local cluster costs seconds per drop.
_RUNNERS: dict[tuple, Any] = {}
_LOCAL_CLUSTERS: list[Any] = []  # The local clusters this process started, ended with it.
_RUNNERS_LOCK = threading.Lock()


def cluster_runner(config: DaskConfig):
    """The started DaskTaskRunner for these settings: connected to config.address, or owning a
    local cluster of config.workers processes."""
    key = (config.address, config.workers)
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _start_runner(config)
            _RUNNERS[key] = runner
        return runner


def _start_runner(config: DaskConfig):
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise BadInputError(
            "running shards on Dask needs the dask extra: pip install 'visionflow[dask]' (or leave out "
            "--dask-address and --dask-workers to run on this machine)"
        ) from None
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        # Each worker would start a temporary Prefect server of its own and record its shards there.
        raise BadInputError(
            "running shards on Dask needs a Prefect server the workers can report to: set PREFECT_API_URL "
            "(visionflow's commands and deployments set it themselves)"
        )
    # Dask logs every worker's start and stop at INFO, and prefect-dask names a dashboard link even
    # where no dashboard runs; a run's log shows its own progress and start-dask-cluster's line.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    logging.getLogger("prefect.task_runner.dask").setLevel(logging.WARNING)
    # Registered after distributed's own exit hook, so it runs first (atexit runs last-in, first-out)
    # and closes the clusters quietly before distributed would close them noisily.
    atexit.register(_close_runners)
    if config.address:
        runner = DaskTaskRunner(address=config.address, client_kwargs={"timeout": config.connect_timeout_seconds})
    else:
        from distributed import LocalCluster

        cluster = LocalCluster(**local_cluster_settings(config.workers or 1))
        _LOCAL_CLUSTERS.append(cluster)
        runner = DaskTaskRunner(cluster=cluster)
    runner.__enter__()
    try:
        runner.client.wait_for_workers(1, timeout=max(120.0, config.connect_timeout_seconds))
    except Exception as error:
        runner.__exit__(None, None, None)
        where = config.address or f"a local cluster of {config.workers} workers"
        raise BadInputError(
            f"cannot reach a Dask worker at {where} ({type(error).__name__}: {error}); check that the scheduler "
            "is running and reachable from this machine, or leave out --dask-address to run here"
        ) from None
    return runner


def local_cluster_settings(workers: int) -> dict:
    """A LocalCluster of worker processes with one task thread each, on 127.0.0.1, no dashboard.

    The engine in each worker (ONNX Runtime, OpenVINO or TensorFlow) keeps its default of one
    thread per core: capping each TensorFlow worker at its share of the cores measured half the
    throughput (docs/BENCHMARKS.md, *Dask*), since a worker decoding has cores idle that another
    worker's predict can use.
    """
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "silence_logs": logging.WARNING,
    }


def _close_runners() -> None:
    # At exit the log handlers' streams may already be closed; a cluster shutting down has nothing to say.
    logging.disable(logging.CRITICAL)
    for cluster in _LOCAL_CLUSTERS:
        _end_workers_now(cluster)
    # The interpreter is exiting: a cluster that will not close is killed with it.
    for resource in [*_RUNNERS.values(), *_LOCAL_CLUSTERS]:
        with contextlib.suppress(Exception):
            resource.__exit__(None, None, None)
    _RUNNERS.clear()
    _LOCAL_CLUSTERS.clear()


def _end_workers_now(cluster) -> None:
    """Kill a local cluster's worker processes: they hold nothing to save (shards only read and
    return), and a worker with TensorFlow loaded takes 4 s to stop when asked, which every command
    would wait for at exit."""
    for nanny in list(cluster.workers.values()):
        with contextlib.suppress(Exception):
            nanny.close_gracefully()  # Its nanny must not start a new worker in its place.
            if nanny.pid:
                os.kill(nanny.pid, signal.SIGKILL)

"""Which TensorFlow distribution strategy trains the model: one device, every local GPU, or many machines.

TrainConfig.distribution names the choice; training_strategy turns it into a tf.distribute
strategy. The model is built and compiled inside the strategy's scope and Keras' fit() spreads
each batch over its replicas. The configured batch size stays the global batch, so one device
trains exactly as before and more devices train the same recipe faster.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

import tensorflow as tf

from visionflow.errors import BadInputError
from visionflow.network.build_model import UnsuitableInputError
from visionflow.tasks.train.recipe.keras_multi_worker import multi_worker_strategy

# How TensorFlow learns the cluster of a multi-worker run: JSON naming every worker's host:port
# and which of them this process is. The same example appears in docs/SCALING.md.
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["trainer-0:12345", "trainer-1:12345"]}, "task": {"type": "worker", "index": 0}}'
)


class DistributionSetupError(BadInputError, ValueError):
    """The chosen distribution cannot start here (no TF_CONFIG, a malformed one, TensorFlow already in use)."""


@dataclass(frozen=True)
class TrainingStrategy:
    """A tf.distribute strategy and how the run logs and records it."""

    strategy: tf.distribute.Strategy
    kind: str  # "default" (one device, no distribution), "mirrored" or "multi-worker".

    @property
    def replicas(self) -> int:
        """Model copies trained in sync, one per device, over every worker."""
        return int(self.strategy.num_replicas_in_sync)

    def describe(self) -> str:
        """A log phrase: the strategy, its replicas and, for one machine, its devices."""
        if self.kind == "default":
            return "the default strategy (one device)"
        replicas = f"{self.replicas} replica{'' if self.replicas == 1 else 's'}"
        if self.kind == "mirrored":
            devices = ", ".join(self.strategy.extended.worker_devices)
            return f"MirroredStrategy over {replicas} ({devices})"
        resolver = self.strategy.cluster_resolver
        return (
            f"MultiWorkerMirroredStrategy over {replicas}, "
            f"as {resolver.task_type} {resolver.task_id} of the cluster in TF_CONFIG"
        )


def strategy_kind(setting: str, local_gpus: int) -> str:
    """The strategy a TrainConfig.distribution setting asks for on a machine with local_gpus GPUs.

    "auto" mirrors only over two or more GPUs: on a CPU or a single GPU the default strategy
    trains exactly as without distribution, at no cost.
    """
    if setting == "auto":
        return "mirrored" if local_gpus >= 2 else "default"
    if setting == "none":
        return "default"
    if setting in ("mirrored", "multi-worker"):
        return setting
    raise DistributionSetupError(f"unknown distribution {setting!r}; choose one of auto, none, mirrored, multi-worker")


def training_strategy(setting: str) -> TrainingStrategy:
    """The strategy for a TrainConfig.distribution setting, created before any other TensorFlow work.

    "multi-worker" is resolved first, without listing devices: its collective operations must be
    configured before TensorFlow starts its runtime in this process.
    """
    if setting == "multi-worker":
        return TrainingStrategy(_multi_worker_strategy(), "multi-worker")
    kind = strategy_kind(setting, len(tf.config.list_logical_devices("GPU")))
    if kind == "mirrored":
        # With no GPU, MirroredStrategy mirrors over the CPU: one replica.
        return TrainingStrategy(tf.distribute.MirroredStrategy(), kind)
    return TrainingStrategy(tf.distribute.get_strategy(), kind)


def check_distribution(setting: str) -> None:
    """Raise DistributionSetupError at once when setting cannot start on this machine.

    The train flow calls it before ingesting, so a multi-worker run without a usable TF_CONFIG
    stops in a second rather than after decoding the whole dataset.
    """
    if setting == "multi-worker":
        cluster_from_environment()


def cluster_from_environment() -> dict:
    """TF_CONFIG, checked: a cluster of workers and this process's place in it."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    where = "the TF_CONFIG environment variable"
    example = f"e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'"
    if not raw:
        raise DistributionSetupError(
            f'distribution "multi-worker" needs {where}: set it on every machine to the same cluster and that '
            f"machine's own task index (0 on the chief), {example}; for the GPUs of one machine use "
            'distribution "mirrored" or "auto" instead'
        )
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise DistributionSetupError(
            f"{where} is not a usable cluster description ({type(error).__name__}: {error}); "
            f"it must be JSON with a cluster and this process's task, {example}"
        ) from error
    if not isinstance(members, list) or not 0 <= index < len(members):
        raise DistributionSetupError(
            f"{where} gives task index {index} but its cluster lists {len(members)} {task['type']} address(es); "
            f"number the machines from 0, {example}"
        )
    return config


@lru_cache(maxsize=1)
def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy (TensorFlow allows one), from TF_CONFIG."""
    cluster_from_environment()
    try:
        return multi_worker_strategy()
    except (RuntimeError, ValueError) as error:
        raise DistributionSetupError(
            f'distribution "multi-worker" could not start: {error}; TensorFlow must not have run anything '
            "in this process before training starts, so run each worker's training as its own command "
            "(visionflow train ... --distribution multi-worker)"
        ) from error


def checked_strategy(distribution: str, batch_size: int, log) -> TrainingStrategy:
    """The strategy a distribution setting asks for, checked against the global batch size and logged."""
    strategy = training_strategy(distribution)
    if batch_size < strategy.replicas:
        raise UnsuitableInputError(
            f"batch_size {batch_size} is smaller than the {strategy.replicas} replicas of "
            f"{strategy.describe()}: batch_size is the global batch and each replica needs images every step; "
            'raise batch_size or train on fewer devices (distribution "none")'
        )
    per_replica = batch_size / strategy.replicas
    log.info("training with %s: %.0f images per replica per step", strategy.describe(), per_replica)
    return strategy

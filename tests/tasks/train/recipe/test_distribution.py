"""Training under a distribution strategy: the choice, one machine's mirroring, many machines, the errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import typing
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
import typer

from visionflow.errors import BadInputError
from visionflow.network.build_model import build_model, channel_statistics
from visionflow.tasks.train.recipe.distribution import (
    DistributionSetupError,
    TrainingStrategy,
    check_distribution,
    checked_strategy,
    strategy_kind,
    training_strategy,
)
from visionflow.tasks.train.recipe.presets import PRESETS, Distribution
from visionflow.tasks.train.train_model import finished_training, train_model

from tests.conftest import REPOSITORY_ROOT
from tests.tasks.train.test_train_model import TRAIN, VAL, CrashAfterFirstEpoch, tiny


@pytest.mark.parametrize(
    ("setting", "gpus", "kind"),
    [
        ("auto", 0, "default"),
        ("auto", 1, "default"),
        ("auto", 2, "mirrored"),
        ("auto", 8, "mirrored"),
        ("none", 4, "default"),
        ("mirrored", 0, "mirrored"),
        ("mirrored", 1, "mirrored"),
        ("multi-worker", 0, "multi-worker"),
    ],
)
def test_each_setting_picks_its_strategy_by_the_local_gpus(setting, gpus, kind):
    assert strategy_kind(setting, gpus) == kind


@pytest.fixture
def cpu_machine(monkeypatch):
    """A machine without GPUs, on which creating a MirroredStrategy fails the test."""
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda device_type=None: [])

    def no_mirroring(*args, **kwargs):
        raise AssertionError("a MirroredStrategy was created on a CPU machine")

    monkeypatch.setattr(tf.distribute, "MirroredStrategy", no_mirroring)


@pytest.mark.usefixtures("cpu_machine")
def test_auto_on_a_cpu_machine_trains_under_the_default_strategy(tmp_path):
    chosen = training_strategy("auto")
    assert chosen.kind == "default" and chosen.replicas == 1
    assert chosen.strategy is tf.distribute.get_strategy()  # No strategy: what plain Keras uses.
    assert not tf.distribute.has_strategy()

    result = train_model(TRAIN, VAL, tiny(epochs=1), tmp_path, 3)
    assert (result.strategy, result.replicas) == ("default", 1)


def test_mirrored_on_a_cpu_trains_to_completion_with_the_same_kind_of_result(tmp_path, caplog):
    plain = train_model(TRAIN, VAL, tiny(epochs=3, distribution="none"), tmp_path / "plain", 3)
    with caplog.at_level("INFO", logger="visionflow.tasks.train.train_model"):
        mirrored = train_model(TRAIN, VAL, tiny(epochs=3, distribution="mirrored"), tmp_path / "mirrored", 3)
    assert "training with MirroredStrategy over 1 replica (" in caplog.text
    assert (mirrored.strategy, mirrored.replicas) == ("mirrored", 1)
    assert (plain.strategy, plain.replicas) == ("default", 1)
    assert mirrored.epochs_run == 3 and set(mirrored.history) == set(plain.history)
    assert mirrored.history["val_accuracy"][-1] >= 0.9 and mirrored.history["loss"][-1] < mirrored.history["loss"][0]
    assert finished_training(tmp_path / "mirrored") == mirrored, "the strategy is recorded with the training"

    model = keras.models.load_model(mirrored.model_path, safe_mode=True)
    probabilities = model.predict(VAL[0], verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == VAL[1]).mean() >= 0.9


def test_a_run_killed_on_one_device_resumes_under_another_strategy(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_model(TRAIN, VAL, tiny(epochs=2, distribution="none"), tmp_path, 3, [CrashAfterFirstEpoch()])
    resumed = train_model(TRAIN, VAL, tiny(epochs=2, distribution="mirrored"), tmp_path, 3)
    assert (resumed.resumed_from_epoch, resumed.epochs_run, resumed.strategy) == (1, 2, "mirrored")
    assert len(resumed.history["loss"]) == 2


def test_multi_worker_without_tf_config_says_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistributionSetupError) as raised:
        training_strategy("multi-worker")
    message = str(raised.value)
    assert 'distribution "multi-worker" needs the TF_CONFIG environment variable' in message
    assert '"task": {"type": "worker", "index": 0}' in message and '"mirrored"' in message
    assert isinstance(raised.value, BadInputError) and raised.value.exit_code == 4

    with pytest.raises(DistributionSetupError, match="TF_CONFIG"):
        train_model(TRAIN, VAL, tiny(epochs=1, distribution="multi-worker"), tmp_path, 3)
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.parametrize(
    ("tf_config", "expected"),
    [
        ("{not json", "is not a usable cluster description"),
        ('{"cluster": {"worker": ["a:1"]}}', "is not a usable cluster description"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "gives task index 2"),
    ],
)
def test_a_tf_config_that_cannot_describe_the_cluster_is_named(monkeypatch, tf_config, expected):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(DistributionSetupError, match=expected):
        training_strategy("multi-worker")


def test_a_global_batch_smaller_than_the_replicas_is_refused(monkeypatch):
    eight = SimpleNamespace(num_replicas_in_sync=8, extended=SimpleNamespace(worker_devices=["/gpu:0"] * 8))
    monkeypatch.setattr(
        "visionflow.tasks.train.recipe.distribution.training_strategy",
        lambda setting: TrainingStrategy(eight, "mirrored"),
    )
    log = SimpleNamespace(info=lambda *args: None)
    with pytest.raises(BadInputError, match="batch_size 4 is smaller than the 8 replicas"):
        checked_strategy("mirrored", tiny(batch_size=4).train.batch_size, log)
    assert checked_strategy("mirrored", tiny(batch_size=8).train.batch_size, log).replicas == 8


def test_batchnorm_is_synchronized_only_when_asked():
    config = PRESETS["default"].model.model_copy(update={"whiten": False, "stem_filters": 8})
    stats = channel_statistics(TRAIN[0])
    for synchronized in (False, True):
        model = build_model(config, (12, 12, 3), 3, channel_stats=stats, synchronized_batchnorm=synchronized)
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and all(layer.synchronized is synchronized for layer in norms)


def test_the_cli_offers_exactly_the_settings_training_accepts():
    from visionflow.cli import app
    from visionflow.cli.pipelines import train

    command = typer.main.get_command(app).commands["train"]
    option = next(parameter for parameter in command.params if parameter.name == "distribution")
    assert option.default is None, "TrainConfig holds the default, not the CLI"
    assert option.show_default == PRESETS["default"].train.distribution == "auto"
    given_type, _option_info = typing.get_args(typing.get_type_hints(train, include_extras=True)["distribution"])
    offered, _none = typing.get_args(given_type)
    assert typing.get_args(offered) == typing.get_args(Distribution)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_two_workers_train_one_model_together(tmp_path):
    """Two local processes form a multi-worker cluster (one CPU replica each) and train the default network."""
    workers = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        command = [sys.executable, "-m", "tests.tasks.train.recipe.multi_worker_run", "default"]
        command += [str(tmp_path / f"run{index}"), str(tmp_path / f"result{index}.json")]
        environment = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        log = open(tmp_path / f"worker{index}.log", "w")  # noqa: SIM115 (closed once the process ends)
        processes.append((subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=environment, stdout=log, stderr=log), log))
    for process, log in processes:
        try:
            process.wait(timeout=400)
        finally:
            process.kill()
            log.close()
    for index, (process, _log) in enumerate(processes):
        assert process.returncode == 0, (tmp_path / f"worker{index}.log").read_text()[-3000:]
    chief, other = (json.loads((tmp_path / f"result{index}.json").read_text()) for index in range(2))
    assert (chief["strategy"], chief["replicas"], chief["epochs_run"]) == ("multi-worker", 2, 2)
    assert chief["history"]["loss"] == other["history"]["loss"], "the workers train one model in step"
    assert all(np.isfinite(chief["history"]["loss"]))


def test_the_setting_is_checked_before_any_work(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for setting in ("auto", "none", "mirrored"):
        check_distribution(setting)
    with pytest.raises(DistributionSetupError, match="needs the TF_CONFIG environment variable"):
        check_distribution("multi-worker")

"""The train flow: ingest, train, evaluate, gate and register, as one Prefect flow run.

ingest (subflow) -> train -> evaluate -> gate (against the champion, on the same test split)
-> register (and promote when the gate passed). Every step is a task in tasks/.
"""

from __future__ import annotations

import time

from prefect import flow

from flows.ingest import IngestConfig, ingest_flow
from flows.runtime import resolve_home
from tasks.evaluate_model import EvaluationConfig, evaluate_model_task
from tasks.gate_model import GateConfig, gate_model_task
from tasks.register_model import model_metadata, register_model_task, registry_files
from tasks.train_model import preset_hyperparameters, preset_overrides, train_model_task, training_run_dir


@flow(name="train", flow_run_name="train-{preset}-{data}")
def train_flow(
    data: str = "demo",
    preset: str = "default",
    epochs: int | None = None,
    ingest: IngestConfig | None = None,
    evaluation: EvaluationConfig | None = None,
    gate: GateConfig | None = None,
    home: str | None = None,
) -> dict:
    """Train a model on `data` with a preset, evaluate it, and register it behind the gate.

    Args:
        data: The labelled image folder to train on (a path on the serving machine), "cifar10" or "demo".
        preset: The network and recipe: "seed" (the classic Keras CIFAR-10 CNN), "default" or "tiny".
        epochs: Train for this many epochs instead of the preset's; empty keeps the preset's.
        ingest: How the images are scanned, decoded (image size, channels) and split.
        evaluation: How the test split is scored (batch size, flip test-time augmentation).
        gate: What a model must reach to become champion (accuracy and per-class recall floors).
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    layout = resolve_home(home)
    evaluation = evaluation or EvaluationConfig()
    overrides = preset_overrides(preset, epochs)
    dataset = ingest_flow(data=data, config=ingest, home=str(layout.root))
    run_dir = training_run_dir(layout.runs, dataset["dataset_fingerprint"], preset, overrides)
    training = train_model_task(dataset["parquet"]["train"], dataset["parquet"]["val"], preset, run_dir, overrides)
    metrics = evaluate_model_task(training.model_path, dataset["parquet"]["test"], run_dir / "evaluation", evaluation)
    decision = gate_model_task(metrics, dataset["parquet"]["test"], layout.models, gate or GateConfig(), evaluation)
    metadata = model_metadata(dataset, training, metrics, preset, preset_hyperparameters(preset, overrides))
    registered = register_model_task(registry_files(training, metrics), metadata, decision, layout.models)
    return {
        **registered,
        "dataset_fingerprint": dataset["dataset_fingerprint"],
        "parquet": dataset["parquet"],
        "preset": preset,
        "epochs_run": training.epochs_run,
        "test_accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "train_images_per_second": round(training.train_images_per_second, 1),
        "seconds": round(time.perf_counter() - started, 2),
    }

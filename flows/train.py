"""The train flow: ingest, train, evaluate, gate and register, as one Prefect flow run.

ingest (subflow) -> with labels, the data plus the labels store's accepted labels as a dataset of its
own (tasks/ingest/add_labels.py) -> train -> export (ONNX, checked against Keras) -> evaluate on the
engine scoring will use -> gate (against the champion, on the same test split) -> register (and
promote when the gate passed). Every training step is a task in tasks/train/.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.states import Completed, State

from visionflow.access import check_deployment_parameters
from visionflow.engines.engine_exports import Engine
from visionflow.flows.ingest import IngestConfig, ingest_flow
from visionflow.home import resolve_home
from visionflow.models.metadata_records import LabelsSnapshotRecord
from visionflow.models.model_export import ExportConfig
from visionflow.network.hardware import MachineKind
from visionflow.network.model_config import Precision
from visionflow.tasks.ingest.add_labels import LabelsUse, add_labels_task, read_labels_task
from visionflow.tasks.ingest.prepare_source import source_folders
from visionflow.tasks.train.check_new_labels import check_new_labels_task
from visionflow.tasks.train.evaluate_model import EvaluationConfig, evaluate_model_task
from visionflow.tasks.train.export_model import export_model_task
from visionflow.tasks.train.gate_model import GateConfig, gate_model_task
from visionflow.tasks.train.recipe.distribution import check_distribution
from visionflow.tasks.train.recipe.presets import (
    Distribution,
    network_overrides,
    preset_overrides,
    resolve_preset,
)
from visionflow.tasks.train.register_model import Registration, register_model_task
from visionflow.tasks.train.train_model import train_model_task, training_run_dir


class TrainSummary(Registration):
    """What one train flow run did: the registration, and the run's data, recipe and results."""

    dataset_fingerprint: str  # The dataset trained on (its ingest's fingerprint).
    parquet: dict[str, str]  # That dataset's split files, by split name.
    preset: str  # The recipe's name.
    machine_kind: MachineKind  # The kind of machine the recipe was sized for (tasks/train/recipe/machine_recipes.py).
    epochs_run: int  # Epochs trained, resumed ones included.
    test_accuracy: float  # Share of the test split classified correctly, 0 to 1 (on `engine`).
    engine: Engine  # The engine scoring takes by default and evaluation predicted on: an export, or keras.
    macro_f1: float  # Mean per-class F1 on the test split, 0 to 1.
    train_images_per_second: float  # Training throughput, validation excluded.
    # Wall-clock seconds of the fit alone (every epoch with its validation), what presets are compared by.
    training_seconds: float
    seconds: float  # Wall-clock seconds of the whole flow run.
    # With labels: the snapshot trained with and where its labels went; None when trained on the folders alone.
    labels: LabelsUse | None = None


@flow(name="train", flow_run_name="train-{preset}-{data}")
def train_flow(
    data: str = "demo",
    preset: str = "default",
    epochs: int | None = None,
    distribution: Distribution | None = None,
    seed: int | None = None,
    train_on_validation: bool | None = None,
    precision: Precision | None = None,
    widths: list[int] | None = None,
    machine_kind: MachineKind | None = None,
    with_labels: bool = False,
    min_new_labels: int = 0,
    ingest: IngestConfig | None = None,
    evaluation: EvaluationConfig | None = None,
    gate: GateConfig | None = None,
    export: ExportConfig | None = None,
    home: str | None = None,
) -> TrainSummary | State:
    """Train a model on `data` with a preset, evaluate it, and register it behind the gate.

    Args:
        data: The labelled image folder to train on (a path on the serving machine), "cifar10" or "demo".
        preset: The network and recipe: "seed" (the classic Keras CIFAR-10 CNN), "default", "large",
            "xlarge" (more accuracy for more time) or "tiny".
        epochs: Train for this many epochs instead of the preset's; empty keeps the preset's.
        seed: Seed the weights, the augmentation and the shuffling with this instead of the preset's (0).
        distribution: Spread training over devices: "auto" (every local GPU when there are two or more),
            "none", "mirrored" (the local GPUs) or "multi-worker" (the machines in TF_CONFIG); empty keeps
            the preset's ("auto"). The preset's batch size is the global batch (docs/SCALING.md).
        train_on_validation: Fit on the validation split too (no early stopping, the last epoch's
            model; the test split stays unseen); empty keeps the preset's.
        precision: Compute in "float32", "mixed_bfloat16" or "auto" (bfloat16 where the hardware has it)
            instead of what the recipe chose for this machine; empty keeps the recipe's.
        widths: Filters of each block of the network (its conv_filters), e.g. [24, 96, 96], instead of the
            recipe's; empty keeps the recipe's.
        machine_kind: Size the recipe for this kind of machine ("gpu", "cpu-amx", "cpu-avx512-bf16", "cpu-avx512",
            "cpu-avx2") instead of the one training runs on, e.g. to reproduce a model of another machine;
            empty reads the machine.
        with_labels: Train on the data plus every accepted label of the labels store (`visionflow labels
            import`), as a dataset of its own: labelled images join the train split only, so test accuracy
            stays comparable with the champion's; fails when the store holds no accepted label.
        min_new_labels: With labels, train only when the store holds at least this many accepted labels beyond
            those the champion learnt from; with fewer the run ends at once, Completed, saying so (0: always train).
        ingest: How the images are scanned, decoded (image size, channels) and split.
        evaluation: How the test split is scored (batch size, flip test-time augmentation).
        gate: What a model must reach to become champion (accuracy and per-class recall floors).
        export: Which inference engines the model is exported to and checked on (int8 too, or not).
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    check_deployment_parameters(home, source_folders(data))
    layout = resolve_home(home)
    evaluation = evaluation or EvaluationConfig()
    overrides = preset_overrides(preset, epochs, distribution, seed, train_on_validation)
    recipe = resolve_preset(preset, overrides, network_overrides(precision, widths), kind=machine_kind)
    check_distribution(recipe.train.distribution)
    # The labels are read first: asking for them with none stored is a mistake worth stopping before ingest.
    labels = read_labels_task(str(layout.root)) if with_labels else None
    if labels is not None and min_new_labels > 0:
        counted = check_new_labels_task(labels[1], layout.models, min_new_labels)
        if not counted.enough:
            return Completed(message=counted.message())
    dataset = ingest_flow(data=data, config=ingest, home=str(layout.root))
    use = None
    if labels is not None:
        dataset = add_labels_task(dataset, *labels, data_docs=layout.root)
        use = dataset.labels
    run_dir = training_run_dir(layout.runs, dataset.dataset_fingerprint, recipe)
    training = train_model_task(dataset.parquet["train"], dataset.parquet["val"], recipe, run_dir)
    exported = export_model_task(
        training.model_path, dataset.parquet["test"], dataset.parquet["train"], export or ExportConfig()
    )
    evaluated = evaluate_model_task(
        training.model_path, dataset.parquet["test"], run_dir / "evaluation", evaluation, exports=exported.exports
    )
    decision = gate_model_task(evaluated, dataset.parquet["test"], layout.models, gate or GateConfig(), evaluation)
    learnt = (
        LabelsSnapshotRecord(**use.snapshot.model_dump(), added_to_train=use.added_to_train, relabelled=use.relabelled)
        if use
        else None
    )
    registered = register_model_task(dataset, training, evaluated, recipe, decision, layout.models, exported, learnt)
    return TrainSummary(
        **registered.model_dump(),
        dataset_fingerprint=dataset.dataset_fingerprint,
        parquet=dataset.parquet,
        preset=preset,
        machine_kind=recipe.machine.kind,
        epochs_run=training.epochs_run,
        test_accuracy=evaluated.metrics.accuracy,
        engine=exported.engine,
        macro_f1=evaluated.metrics.macro_f1,
        train_images_per_second=round(training.train_images_per_second, 1),
        training_seconds=round(training.seconds, 1),
        seconds=round(time.perf_counter() - started, 2),
        labels=use,
    )

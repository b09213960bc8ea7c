"""Stage: the model registry and its approval gate.

Every trained model is registered under VISIONFLOW_HOME/models/<version>/ with everything needed
to trust or reproduce it. Only a model that passes the gate becomes the champion, the model
scoring uses: the champion pointer (models/champion.json) moves by an atomic rename, so readers
see the old champion or the new one, never a half-written pointer, and a failed or rejected run
never touches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.profile_images import profile_split
from tasks.run_context import publish_markdown, run_logger
from tasks.write_parquet import read_split_metadata

if TYPE_CHECKING:
    from tasks.gate_model import GateDecision

CHAMPION_POINTER = "champion.json"
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"

# Packages whose versions a model's metadata records, because they shape its pixels or weights.
RECORDED_PACKAGES = ["visionflow", "tensorflow", "keras", "numpy", "pillow", "simplejpeg", "pyarrow", "pandas",
                     "prefect", "great-expectations", "scikit-learn"]  # fmt: skip


def read_champion(models_root: Path) -> dict | None:
    """The champion pointer ({"version", "promoted_at"}), or None when no model was promoted yet."""
    path = Path(models_root) / CHAMPION_POINTER
    if not path.exists():
        return None
    return json.loads(path.read_text())


def champion_dir(models_root: Path) -> Path | None:
    """The champion's registry folder, or None."""
    pointer = read_champion(models_root)
    return Path(models_root) / pointer["version"] if pointer else None


def set_champion(models_root: Path, version: str) -> None:
    """Point champion.json at version: written to a temporary file, then renamed over the old one."""
    pointer = {"version": version, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    _write_json_atomically(Path(models_root) / CHAMPION_POINTER, pointer)


def register(model_files: dict[str, Path], metadata: dict, models_root: Path) -> str:
    """Copy a model and its files into a new version folder; return the version ("v0001", ...).

    The folder is filled under a temporary name and renamed into place, so a version folder
    that exists is complete. Versions are claimed with an exclusive rename, so two runs
    registering at once get different versions.
    """
    models_root = Path(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    staging = models_root / f".staging-{os.getpid()}-{datetime.now(UTC).strftime('%H%M%S%f')}"
    staging.mkdir()
    try:
        for name, source in model_files.items():
            shutil.copy2(source, staging / name)
        while True:
            version = next_version(models_root)
            _write_json_atomically(staging / METADATA_FILE, {**metadata, "version": version})
            try:
                os.rename(staging, models_root / version)
                return version
            except OSError:
                if not (models_root / version).exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def next_version(models_root: Path) -> str:
    """The next free version name: one more than the highest registered."""
    numbers = [int(path.name[1:]) for path in Path(models_root).glob("v[0-9]*") if path.name[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:04d}"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a model."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(directory: Path) -> str | None:
    """The commit of the code that trained the model, when it runs from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def registry_files(training, metrics: dict) -> dict[str, str]:
    """The files a registered model keeps, by name: the model and its history and curves from
    training, the metrics and confusion matrix from evaluation."""
    files = dict(training.registry_files())
    files["metrics.json"] = metrics["metrics_path"]
    files["confusion.png"] = metrics["confusion_png"]
    return files


def model_metadata(dataset: dict, training, metrics: dict, preset: str, hyperparameters: dict) -> dict:
    """Everything a registered model records: its data, recipe, results and provenance.

    dataset is the ingest summary, training the TrainResult, metrics the evaluation's result
    and hyperparameters the preset's full model and training settings after overrides.
    """
    split_metadata = read_split_metadata(dataset["parquet"]["train"])
    return {
        "dataset_fingerprint": dataset["dataset_fingerprint"],
        "dataset_dir": dataset["dataset_dir"],
        "contract_versions": split_metadata.get("contract_versions", {}),
        "class_names": dataset["classes"],
        "input_shape": dataset["image_shape"],
        # The training images' statistics, against which scoring measures each drop's drift.
        "training_profile": profile_split(dataset["parquet"]["train"]).model_dump(),
        "preset": preset,
        "hyperparameters": hyperparameters,
        "seed": training.seed,
        "precision": training.precision,
        "epochs_run": training.epochs_run,
        "train_seconds": round(training.seconds, 2),
        "train_images_per_second": round(training.train_images_per_second, 1),
        "metrics": {
            key: metrics[key] for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class")
        },
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }


def _write_json_atomically(path: Path, document: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(document, indent=2, default=str))
    os.replace(temporary, path)


@task(name="register-model", cache_policy=NO_CACHE)
def register_model_task(model_files: dict[str, str], metadata: dict, decision: GateDecision, models_root: Path) -> dict:
    """Prefect task: register the model with its gate decision; promote it when the gate passed."""
    log = run_logger(__name__)
    record = {**metadata, "gate": asdict(decision), "registered_at": datetime.now(UTC).isoformat(timespec="seconds")}
    version = register({name: Path(path) for name, path in model_files.items()}, record, Path(models_root))
    if decision.promoted:
        set_champion(Path(models_root), version)
        log.info("registered %s and promoted it to champion: %s", version, decision.reason)
    else:
        log.warning("registered %s, not promoted: %s", version, decision.reason)
    champion = read_champion(Path(models_root))
    publish_markdown(
        "model-registry",
        f"# Model {version}\n\n- promoted: **{decision.promoted}**\n- reason: {decision.reason}\n"
        f"- champion now: {champion['version'] if champion else 'none'}\n",
        f"Registration of model {version}",
    )
    return {
        "model_version": version,
        "model_path": str(Path(models_root) / version / MODEL_FILE),
        "promoted": decision.promoted,
        "gate_reason": decision.reason,
        "champion_version": champion["version"] if champion else None,
    }

"""The registry: complete version folders, unique versions, an atomically moved champion, and
models found by name and loaded only when they match their record."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from visionflow.errors import BadInputError, DamagedStateError, InvalidSettingError
from visionflow.models.champion import LOCK_FILE, set_champion
from visionflow.models.champion_pointer import CHAMPION_POINTER, ChampionPointer, champion_dir, read_champion
from visionflow.models.registry import (
    ModelMetadata,
    find_model,
    load_checked_model,
    next_version,
    read_metadata,
    register,
)

from tests.scoring_helpers import CLASSES, SHAPE, register_tiny_model


@pytest.fixture
def model_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for a trained model's files (the registry copies bytes; it never loads them)."""
    folder = tmp_path / "run"
    folder.mkdir()
    files = {"model.keras": folder / "model.keras", "metrics.json": folder / "metrics.json"}
    files["model.keras"].write_bytes(b"model bytes")
    files["metrics.json"].write_text('{"accuracy": 0.8}')
    return files


def test_versions_count_up_and_hold_every_file(model_files, tmp_path):
    root = tmp_path / "models"
    assert register(model_files, ModelMetadata(preset="seed"), root) == "v0001"
    assert register(model_files, ModelMetadata(preset="default"), root) == "v0002"
    assert (root / "v0002" / "model.keras").read_bytes() == b"model bytes"
    assert json.loads((root / "v0002" / "metadata.json").read_text()) == {"preset": "default", "version": "v0002"}
    assert next_version(root) == "v0003"
    assert not list(root.glob(".staging-*"))


def test_registrations_at_the_same_time_get_different_versions(model_files, tmp_path):
    root = tmp_path / "models"
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda index: register(model_files, ModelMetadata(seed=index), root), range(8)))
    assert sorted(versions) == [f"v{number:04d}" for number in range(1, 9)]


def test_champion_pointer_moves_only_when_set(model_files, tmp_path):
    root = tmp_path / "models"
    assert read_champion(root) is None and champion_dir(root) is None
    register(model_files, ModelMetadata(), root)
    set_champion(root, "v0001")
    assert read_champion(root).version == "v0001" and read_champion(root).promoted_at.endswith("+00:00")
    assert champion_dir(root) == root / "v0001"
    assert [path.name for path in root.iterdir() if path.name.startswith(".")] == [LOCK_FILE], "no temporary files"
    assert (root / CHAMPION_POINTER).exists()


def test_the_champion_and_a_named_version_are_found_and_load(tmp_path):
    models = tmp_path / "models"
    first = register_tiny_model(models)
    second = register_tiny_model(models, champion=False)
    champion = find_model(models)
    assert champion.version == first and champion.class_names == CLASSES and champion.input_shape == SHAPE
    assert champion.training_profile is not None and champion.training_profile.images == 100
    named = find_model(models, second)
    assert named.version == second
    assert load_checked_model(named).output_shape == (None, len(CLASSES))


def test_a_loaded_model_is_reused_until_its_file_changes(tmp_path):
    models = tmp_path / "models"
    version = register_tiny_model(models)
    record = find_model(models)
    first = load_checked_model(record)
    assert load_checked_model(find_model(models)) is first, "the same unchanged file is loaded once per process"

    path = models / version / "model.keras"
    os.utime(path, ns=(0, 0))  # Replaced by a file of the same size: its identity still differs.
    reloaded = load_checked_model(find_model(models))
    assert reloaded is not first
    path.write_bytes(b"damaged")
    with pytest.raises(DamagedStateError):
        load_checked_model(find_model(models))


def test_no_champion_yet_says_to_train_first(tmp_path):
    with pytest.raises(BadInputError, match="no champion model yet.*visionflow train"):
        find_model(tmp_path / "models")


def test_an_unknown_version_lists_the_registered_ones(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    with pytest.raises(BadInputError, match=f"no registered model 'v0099'.*registered: {version}"):
        find_model(tmp_path / "models", "v0099")


def test_a_model_whose_shape_differs_from_its_record_is_refused(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    metadata_path = tmp_path / "models" / version / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**metadata, "input_shape": [32, 32, 3]}))
    record = find_model(tmp_path / "models")
    with pytest.raises(BadInputError, match=r"takes images of shape \(12, 12, 3\) but its registry record says"):
        load_checked_model(record)


def test_a_damaged_model_file_is_refused(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    (tmp_path / "models" / version / "model.keras").write_bytes(b"not a keras file")
    with pytest.raises(DamagedStateError, match=f"cannot load model {version} .*damaged or truncated.*--model"):
        load_checked_model(find_model(tmp_path / "models"))


def test_a_damaged_champion_pointer_names_the_file_and_the_versions_to_point_at(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    pointer = tmp_path / "models" / "champion.json"
    for damage in ("{not json", '"v0001"', '{"promoted_at": "today"}'):
        pointer.write_text(damage)
        with pytest.raises(DamagedStateError, match=f"champion pointer {pointer} is damaged.*registered: {version}"):
            find_model(tmp_path / "models")
    assert pointer.read_text() == '{"promoted_at": "today"}', "the damaged file is left for a person to mend"


def test_damaged_model_metadata_names_the_file_and_the_way_back(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    metadata_path = tmp_path / "models" / version / "metadata.json"
    for damage in ("{", '["a list"]', b"\xff\xfe"):
        metadata_path.write_bytes(damage if isinstance(damage, bytes) else damage.encode())
        with pytest.raises(DamagedStateError, match=f"model metadata {metadata_path} is damaged.*restore it"):
            find_model(tmp_path / "models", version)
        with pytest.raises(DamagedStateError, match="model metadata"):
            read_metadata(metadata_path.parent)
    metadata_path.write_text(json.dumps({"class_names": list(CLASSES)}))
    with pytest.raises(DamagedStateError, match="lacks input_shape"):
        find_model(tmp_path / "models", version)
    metadata_path.write_text(json.dumps({"class_names": "blue", "input_shape": list(SHAPE)}))
    with pytest.raises(DamagedStateError, match=r"model metadata .* is damaged \(class_names: .*\): restore it"):
        find_model(tmp_path / "models", version)


def test_a_registry_written_by_hand_or_by_an_older_visionflow_still_loads(tmp_path):
    root = tmp_path / "models"
    version = register_tiny_model(root, champion=False)
    per_class = [{"class": name, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4} for name in CLASSES]
    written = {
        "class_names": list(CLASSES), "input_shape": list(SHAPE), "preset": "seed", "retired_field": [1, 2],
        "metrics": {"accuracy": 0.5, "macro_precision": 0.5, "macro_recall": 0.5, "macro_f1": 0.5,
                    "per_class": per_class},
        "gate": {"promoted": True},
    }  # fmt: skip
    (root / version / "metadata.json").write_text(json.dumps(written))
    (root / "champion.json").write_text(json.dumps({"version": version}))
    assert read_champion(root) == ChampionPointer(version=version, promoted_at=None)
    record = find_model(root)
    assert record.version == version and record.class_names == CLASSES and record.training_profile is None
    metadata = read_metadata(root / version)
    assert metadata.preset == "seed" and metadata.metrics.weakest_class().class_name == CLASSES[0]
    assert metadata.gate.promoted and metadata.gate.reason is None and metadata.dataset_dir is None
    assert metadata.file_fields() == written, "the fields it holds, and only those, unknown ones kept"


def test_staging_left_by_a_killed_registration_is_removed_by_the_next(model_files, tmp_path):
    root = tmp_path / "models"
    abandoned = root / ".staging-999999999-000000000000"  # No process has this id.
    abandoned.mkdir(parents=True)
    (abandoned / "model.keras").write_bytes(b"half a copy")
    running = root / f".staging-{os.getpid()}-000000000000"  # A registration still in progress.
    running.mkdir()
    assert register(model_files, ModelMetadata(), root) == "v0001"
    assert not abandoned.exists() and running.exists()


@pytest.mark.parametrize("model", ["../../elsewhere", "/some/dir", "v1/../../x", "V0001", ""])
def test_a_model_name_that_is_not_a_version_is_refused_before_touching_the_file_system(tmp_path, model):
    register_tiny_model(tmp_path / "models")
    with pytest.raises(InvalidSettingError, match="is not a model version: use 'champion' or a registered version"):
        find_model(tmp_path / "models", model)


def test_metadata_with_partial_metrics_and_gate_still_reads(tmp_path):
    """Older or hand-written metadata may hold only some metrics and a gate without its decision: the
    version still reads (for listing and scoring), incomplete, and is written back as it was."""
    version_dir = tmp_path / "v0001"
    version_dir.mkdir()
    fields = {"class_names": ["a", "b"], "metrics": {"accuracy": 0.9, "macro_f1": 0.8}, "gate": {"reason": "old"}}
    (version_dir / "metadata.json").write_text(json.dumps(fields))
    metadata = read_metadata(version_dir)
    assert metadata.metrics.accuracy == 0.9 and metadata.metrics.macro_precision is None
    assert not metadata.metrics.complete() and metadata.gate.promoted is False
    assert metadata.file_fields()["metrics"] == {"accuracy": 0.9, "macro_f1": 0.8}

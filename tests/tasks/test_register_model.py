"""The registry: complete version folders, unique versions, and an atomically moved champion."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tasks.gate_model import GateDecision
from tasks.register_model import (
    CHAMPION_POINTER,
    champion_dir,
    git_commit,
    next_version,
    package_versions,
    read_champion,
    register,
    register_model_task,
    set_champion,
)


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
    assert register(model_files, {"preset": "seed"}, root) == "v0001"
    assert register(model_files, {"preset": "default"}, root) == "v0002"
    assert (root / "v0002" / "model.keras").read_bytes() == b"model bytes"
    assert json.loads((root / "v0002" / "metadata.json").read_text()) == {"preset": "default", "version": "v0002"}
    assert next_version(root) == "v0003"
    assert not list(root.glob(".staging-*"))


def test_registrations_at_the_same_time_get_different_versions(model_files, tmp_path):
    root = tmp_path / "models"
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda index: register(model_files, {"index": index}, root), range(8)))
    assert sorted(versions) == [f"v{number:04d}" for number in range(1, 9)]


def test_champion_pointer_moves_only_when_set(model_files, tmp_path):
    root = tmp_path / "models"
    assert read_champion(root) is None and champion_dir(root) is None
    register(model_files, {}, root)
    set_champion(root, "v0001")
    assert read_champion(root)["version"] == "v0001"
    assert champion_dir(root) == root / "v0001"
    assert [path.name for path in root.iterdir() if path.name.startswith(".")] == []
    assert (root / CHAMPION_POINTER).exists()


def test_the_task_promotes_or_keeps_the_champion_as_the_gate_decided(model_files, tmp_path):
    root = tmp_path / "models"
    files = {name: str(path) for name, path in model_files.items()}
    promoted = register_model_task.fn(files, {"preset": "seed"}, GateDecision(True, "first", None, None), root)
    assert promoted == {
        "model_version": "v0001",
        "model_path": str(root / "v0001" / "model.keras"),
        "promoted": True,
        "gate_reason": "first",
        "champion_version": "v0001",
    }
    rejected = register_model_task.fn(files, {}, GateDecision(False, "worse than v0001", "v0001", 0.8), root)
    assert rejected["model_version"] == "v0002" and not rejected["promoted"]
    assert rejected["champion_version"] == "v0001"
    stored = json.loads((root / "v0002" / "metadata.json").read_text())
    assert stored["gate"]["promoted"] is False and stored["gate"]["reason"] == "worse than v0001"


def test_provenance_helpers():
    versions = package_versions()
    assert {"tensorflow", "keras", "numpy"} <= set(versions)
    commit = git_commit(Path(__file__).parent)
    assert commit is None or len(commit) == 40
    assert git_commit(Path("/")) is None

"""`visionflow models` and `visionflow evaluate`: reading the registry, moving the champion, measuring a model."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import VISIONFLOW
from tests.registry_helpers import three_model_registry


@pytest.fixture
def registry(home):
    dataset_dir = home / "datasets" / "shapes"
    three_model_registry(home / "models", dataset_dir)
    return home


def run_offline(*arguments: str, home) -> subprocess.CompletedProcess:
    """list and show need no Prefect server."""
    command = [*VISIONFLOW, *arguments, "--home", str(home)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_list_shows_every_version_with_the_champion_marked(registry):
    result = run_offline("models", "list", "--json", home=registry)
    listing = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and listing["champion"] == "v0001"
    assert [model["version"] for model in listing["models"]] == ["v0003", "v0002", "v0001"]
    assert listing["models"][1]["test_accuracy"] == 0.99 and listing["models"][1]["dataset"] == "shapes"
    assert list(listing) == ["models_root", "champion", "models"] and list(listing["models"][1]) == [
        "version", "champion", "preset", "dataset", "dataset_fingerprint", "test_accuracy", "macro_f1",
        "registered_at", "gate_promoted", "gate_reason",
    ]  # fmt: skip
    human = run_offline("models", "list", home=registry).stdout
    assert "* v0001" in human and "  v0002    tiny" in human and "0.9900" in human


def test_show_and_its_errors(registry):
    shown = json.loads(run_offline("models", "show", "v0002", "--json", home=registry).stdout.splitlines()[-1])
    assert shown["version"] == "v0002" and shown["champion"] is False and "training_profile" not in shown
    stored = json.loads((registry / "models" / "v0002" / "metadata.json").read_text())
    del stored["training_profile"]
    assert shown == {**stored, "champion": False, "history": []}, "metadata.json as it is, and the champion facts"
    missing = run_offline("models", "show", "v0042", home=registry)
    assert missing.returncode == 4 and "no registered model 'v0042'" in missing.stderr
    assert "Traceback" not in missing.stderr
    empty = run_offline("models", "list", home=registry / "elsewhere")
    assert empty.returncode == 0 and "no models registered" in empty.stdout


def test_promote_refused_forced_and_rolled_back(run_cli, registry):
    refused = run_cli("models", "promote", "v0003")
    assert refused.returncode == 8 and "v0003 was not promoted: test accuracy 0.2000 is below" in refused.stderr
    assert run_cli("models", "promote", "v0003", "--force").returncode == 2
    forced = run_cli("models", "promote", "v0003", "--force", "--reason", "known good", "--json")
    move = json.loads(forced.stdout.strip().splitlines()[-1])
    assert forced.returncode == 0 and (move["action"], move["to_version"]) == ("force", "v0003")
    assert "via visionflow models promote v0003 --force --reason known good --json" in move["by"]
    back = run_cli("models", "rollback")
    assert back.returncode == 0 and "champion: v0003 -> v0001 (rollback)" in back.stdout
    shown = run_offline("models", "show", "v0003", home=registry).stdout
    assert "force v0001 -> v0003: known good" in shown and "rollback v0003 -> v0001" in shown


def test_evaluate_json_and_a_class_mismatch(run_cli, home, make_image_folder):
    from tests.scoring_helpers import register_tiny_model

    register_tiny_model(home / "models")
    register_tiny_model(home / "models", champion=False)
    folder = make_image_folder(layout="flat", per_class=6)
    result = run_cli("evaluate", "--data", str(folder), "--compare", "v0002", "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and summary["images"] == 18 and summary["comparison"]["models"] == ["v0001", "v0002"]
    human = run_cli("evaluate", "--data", str(folder))
    assert human.returncode == 0 and human.stdout.startswith("evaluated v0001 on ")
    register_tiny_model(home / "models", classes=["cyan", "magenta"])
    refused = run_cli("evaluate", "--data", str(folder), "--model", "v0003")
    assert refused.returncode == 4 and "no images of cyan, magenta" in refused.stderr

"""The `visionflow` command as a user runs it: a real process, real files, a real Prefect server."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import VISIONFLOW

REQUIRED_INGEST_KEYS = {
    "dataset_fingerprint",
    "classes",
    "image_shape",
    "splits",
    "quarantined",
    "parquet",
    "contracts",
    "seconds",
}


def test_help_answers_without_starting_anything():
    result = subprocess.run([*VISIONFLOW, "ingest", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "--data" in result.stdout and "--json" in result.stdout and "--image-size" in result.stdout


def test_ingest_json_is_the_last_line_of_stdout(run_cli, make_image_folder, home):
    root = make_image_folder(layout="split", per_class=50, test_per_class=5)
    result = run_cli("ingest", "--data", str(root), "--image-size", "16", "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) >= REQUIRED_INGEST_KEYS
    assert summary["image_shape"] == [16, 16, 3] and summary["splits"]["test"] == 15
    assert all(Path(path).is_relative_to(home) for path in summary["parquet"].values())
    assert "Task run" in result.stderr, "logs go to stderr"


def test_ingest_prints_a_human_summary(run_cli, make_image_folder):
    root = make_image_folder(layout="flat", per_class=50)
    result = run_cli("ingest", "--data", str(root), "--workers", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ingested images: 150 files, 0 quarantined" in result.stdout
    assert "contract raw_manifest: passed" in result.stdout


def test_a_missing_folder_exits_4_with_one_line_and_no_traceback(run_cli, tmp_path):
    result = run_cli("ingest", "--data", str(tmp_path / "nowhere"), "--json")
    assert result.returncode == 4
    assert json.loads(result.stdout.strip().splitlines()[-1])["exit_code"] == 4
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("visionflow: --data") and "no such folder" in last_line
    assert "Traceback" not in result.stderr


def test_leakage_exits_3_naming_the_overlap(run_cli, make_image_folder):
    root = make_image_folder(layout="split", per_class=50, test_per_class=5)
    shutil.copy(root / "test" / "red" / "001.png", root / "train" / "red" / "leaked.png")
    result = run_cli("ingest", "--data", str(root), "--workers", "1")
    assert result.returncode == 3
    assert "in_other_split" in result.stderr and "leaked.png" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_options_exit_2(run_cli, make_image_folder):
    root = make_image_folder(layout="flat", per_class=2)
    result = run_cli("ingest", "--data", str(root), "--channels", "2")
    assert result.returncode == 2
    assert "channels" in result.stderr


def test_an_unusable_home_exits_4_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = subprocess.run(
        [*VISIONFLOW, "ingest", "--data", "demo", "--home", str(blocker / "home")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 4
    assert "as VISIONFLOW_HOME" in result.stderr and "Traceback" not in result.stderr


REQUIRED_TRAIN_KEYS = {
    "model_version",
    "model_path",
    "dataset_fingerprint",
    "parquet",
    "preset",
    "machine_kind",
    "epochs_run",
    "test_accuracy",
    "macro_f1",
    "promoted",
    "gate_reason",
    "champion_version",
    "seconds",
    "train_images_per_second",
    "training_seconds",
}


def test_train_json_reports_the_registered_model(run_cli, make_image_folder):
    root = make_image_folder(layout="flat", per_class=50)
    options = ["--preset", "tiny", "--image-size", "12", "--seed", "3", "--train-on-validation", "--json"]
    result = run_cli("train", "--data", str(root), *options)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) >= REQUIRED_TRAIN_KEYS
    assert summary["model_version"] == "v0001" and summary["preset"] == "tiny" and summary["epochs_run"] == 2
    assert Path(summary["model_path"]).is_file()
    assert 0 < summary["training_seconds"] < summary["seconds"], "the fit alone is part of the whole run"
    metadata = json.loads((Path(summary["model_path"]).parent / "metadata.json").read_text())
    assert metadata["seed"] == 3 and metadata["hyperparameters"]["train"]["seed"] == 3
    assert metadata["hyperparameters"]["train"]["train_on_validation"] is True
    assert "fitting on the validation split too" in result.stderr
    assert summary["machine_kind"] == metadata["machine"]["kind"]
    assert "recipe for " + summary["machine_kind"] in result.stderr, "training logs the machine's choice"


def test_the_machine_kind_widths_and_precision_reach_the_model_and_its_record(run_cli, make_image_folder, home):
    root = make_image_folder(layout="flat", per_class=50)
    options = ["--preset", "tiny", "--image-size", "12", "--epochs", "1", "--json"]
    chosen = ["--machine-kind", "cpu-avx2", "--widths", "4,8", "--precision", "float32"]
    result = run_cli("train", "--data", str(root), *options, *chosen)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["machine_kind"] == "cpu-avx2"
    metadata = json.loads((Path(summary["model_path"]).parent / "metadata.json").read_text())
    assert metadata["machine"]["chosen_by"] == "request" and metadata["machine"]["kind"] == "cpu-avx2"
    assert metadata["hyperparameters"]["model"]["conv_filters"] == [4, 8] and metadata["precision"] == "float32"
    shown = run_cli("models", "show", summary["model_version"])
    assert "recipe for cpu-avx2 (named by the run;" in shown.stdout
    for widths in ("4,x", "4,0", ""):
        refused = run_cli("train", "--data", str(root), *options, "--widths", widths)
        assert refused.returncode == 2 and "--widths" in refused.stderr.strip().splitlines()[-1]


def test_an_unknown_preset_exits_2_listing_the_presets(run_cli, make_image_folder):
    root = make_image_folder(layout="flat", per_class=50)
    result = run_cli("train", "--data", str(root), "--preset", "fastest")
    assert result.returncode == 2
    listed = "invalid option: unknown preset 'fastest'; choose one of seed, default, large, xlarge, tiny"
    assert listed in result.stderr.strip().splitlines()[-1]


def test_a_seed_out_of_range_exits_2_before_any_ingest(run_cli, make_image_folder, home):
    root = make_image_folder(layout="flat", per_class=2)
    for seed, bound in (("-1", "greater than or equal to 0"), ("4294967296", "less than 4294967296")):
        result = run_cli("train", "--data", str(root), "--preset", "tiny", "--seed", seed)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"visionflow: invalid option: seed: Input should be {bound}"
        assert "Traceback" not in result.stderr
    assert not (home / "datasets").exists(), "nothing was ingested"


def test_train_with_labels_json_names_the_snapshot_and_where_the_labels_went(run_cli, make_image_folder, home):
    from visionflow.home import resolve_home
    from visionflow.labels.labels_store import LabelRow, LabelsStore

    root = make_image_folder(layout="flat", per_class=50)
    reviewed = make_image_folder(layout="flat", per_class=2, size=14, name="reviewed")  # Contents of their own.
    with LabelsStore(resolve_home(str(home))) as store:
        for image in sorted(reviewed.rglob("*.png")):
            data = image.read_bytes()
            sha256 = hashlib.sha256(data).hexdigest()
            store.keep_content(sha256, data)
            store.add(sha256, LabelRow(sha256=sha256, class_name=image.parent.name, source="csv", origin=image.name))
    result = run_cli("train", "--data", str(root), "--preset", "tiny", "--epochs", "1", "--with-labels", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["labels"]["snapshot"]["count"] == 6 and summary["labels"]["added_to_train"] == 6
    assert summary["labels"]["base_fingerprint"] != summary["dataset_fingerprint"]
    metadata = json.loads((Path(summary["model_path"]).parent / "metadata.json").read_text())
    assert metadata["labels"]["digest"] == summary["labels"]["snapshot"]["digest"]
    shown = run_cli("models", "show", summary["model_version"])
    assert "learnt from 6 reviewed labels" in shown.stdout and "6 images added to train" in shown.stdout


def test_train_with_labels_and_none_stored_exits_4_saying_how_to_import_some(run_cli, make_image_folder, home):
    root = make_image_folder(layout="flat", per_class=2)
    result = run_cli("train", "--data", str(root), "--preset", "tiny", "--with-labels")
    assert result.returncode == 4, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"visionflow: no accepted labels in {home / 'labels'}") and "visionflow labels import" in last
    )
    assert not (home / "datasets").exists(), "nothing was ingested"

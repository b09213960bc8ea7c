"""`visionflow score` as a user runs it: a real process, a real drop, a real Prefect server."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import VISIONFLOW
from tests.scoring_helpers import build_hostile_drop, register_tiny_model

REQUIRED_SCORE_KEYS = {
    "drop", "model_version", "scored", "already_scored", "rejected", "predictions_path", "rejections_path",
    "seconds", "images_per_second",
}  # fmt: skip


def test_score_help_names_the_drop_and_the_model_option():
    result = subprocess.run([*VISIONFLOW, "score", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "DROP" in result.stdout and "--model" in result.stdout


def test_score_json_then_human_summary_on_a_second_run(run_cli, home, tmp_path):
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    result = run_cli("score", str(drop), "--json", "--workers", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) >= REQUIRED_SCORE_KEYS and summary["scored"] > 0 and summary["rejected"] > 0
    assert "leaked" not in result.stderr, "nothing the command's processes made is left behind"
    again = run_cli("score", str(drop), "--workers", "1")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"0 scored, {summary['scored']} already scored, {summary['rejected']} rejected" in again.stdout


def test_no_champion_exits_4_saying_to_train_first(run_cli, tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "x.png").write_bytes(b"x")
    result = run_cli("score", str(tmp_path / "drop"), "--json")
    assert result.returncode == 4
    assert json.loads(result.stdout.strip().splitlines()[-1])["exit_code"] == 4
    assert "no champion model yet" in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr


def test_a_missing_drop_exits_4_naming_it(run_cli, home, tmp_path):
    register_tiny_model(home / "models")
    result = run_cli("score", str(tmp_path / "nowhere"))
    assert result.returncode == 4
    assert f"drop folder {tmp_path / 'nowhere'} does not exist" in result.stderr.strip().splitlines()[-1]


def test_damaged_state_exits_6_naming_the_file_and_the_way_out(run_cli, home, tmp_path):
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "x.png").write_bytes(b"x")
    ledger = home / "ledger" / "scoring.sqlite"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"garbage where the ledger was " * 200)
    result = run_cli("score", str(drop), "--json")
    assert result.returncode == 6, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert f"scoring ledger {ledger} is damaged" in last and f"mv {ledger}" in last and "Traceback" not in result.stderr

    ledger.unlink()
    (home / "models" / "champion.json").write_text("{half a pointer")
    result = run_cli("score", str(drop))
    assert result.returncode == 6 and "champion pointer" in result.stderr.strip().splitlines()[-1]

    (home / "models" / "champion.json").write_text(json.dumps({"version": "v0001"}))
    (home / "models" / "v0001" / "metadata.json").write_text("{")
    result = run_cli("score", str(drop))
    assert result.returncode == 6 and "Traceback" not in result.stderr
    assert f"model metadata {home / 'models' / 'v0001' / 'metadata.json'} is damaged" in result.stderr


def test_a_model_given_as_a_path_or_an_empty_drop_is_refused_with_one_line(run_cli, home, tmp_path):
    register_tiny_model(home / "models")
    result = run_cli("score", str(tmp_path), "--model", str(tmp_path / "model.keras"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("use 'champion' or a registered version such as v0002")
    result = run_cli("score", "")
    assert result.returncode == 4 and result.stderr.strip().splitlines()[-1].endswith(
        "the drop folder is empty (''): give the folder of images to score"
    )

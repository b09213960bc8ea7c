"""`visionflow score` on an exported model: no TensorFlow in the scoring process, and a tampered export refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from visionflow.models.registry import read_metadata

from tests.engine_helpers import register_exported_model
from tests.scoring_helpers import build_hostile_drop

# Run in a fresh interpreter: the score flow in-process, then which heavy modules it imported.
SCORE_AND_REPORT_MODULES = """
import json, sys
from visionflow.flows.score import ScoringConfig, score_flow
summary = score_flow(drop=sys.argv[1], config=ScoringConfig(score={"engine": sys.argv[2], "workers": 1}),
                     home=sys.argv[3])
print(json.dumps({"engine": summary.engine, "scored": summary.scored,
                  "imported": sorted(name for name in ("tensorflow", "keras") if name in sys.modules)}))
"""


def test_scoring_on_an_export_never_imports_tensorflow_or_keras(prefect_server, home, tmp_path):
    from prefect.settings import PREFECT_API_URL

    register_exported_model(home / "models", tmp_path / "dataset")
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "VISIONFLOW_HOME": str(home)}
    for engine in ("onnx", "openvino", "auto"):
        result = subprocess.run(
            [sys.executable, "-c", SCORE_AND_REPORT_MODULES, str(drop), engine, str(home)],
            capture_output=True, text=True, env=environment, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome["engine"] in ("onnx", "openvino") and outcome["imported"] == [], outcome


def test_a_tampered_export_exits_6_naming_it_and_writes_no_prediction(run_cli, home, tmp_path):
    version = register_exported_model(home / "models", tmp_path / "dataset")
    exported = home / "models" / version / read_metadata(home / "models" / version).exports.export_of("onnx").file
    exported.write_bytes(exported.read_bytes()[:-100])  # Truncated, as a half-copied file would be.
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    for engine in ("auto", "openvino", "onnx"):
        result = run_cli("score", str(drop), "--engine", engine, "--json")
        assert result.returncode == 6, result.stderr[-2000:]
        message = result.stderr.strip().splitlines()[-1]
        assert str(exported) in message and f"visionflow models export {version}" in message
        assert not list((home / "predictions").glob("*/predictions/*.parquet")), "nothing was predicted from it"
    rebuilt = run_cli("models", "export", version, "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    again = run_cli("score", str(drop), "--engine", "onnx", "--json")
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["engine"] == "onnx"


def test_a_model_without_exports_scores_on_keras_when_asked_and_auto_exports_it_once(run_cli, home, tmp_path):
    version = register_exported_model(home / "models", tmp_path / "dataset", export=False)
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    on_keras = run_cli("score", str(drop), "--engine", "keras", "--json")
    assert on_keras.returncode == 0 and json.loads(on_keras.stdout.strip().splitlines()[-1])["engine"] == "keras"
    assert not list((home / "models" / version).glob("*.onnx"))
    auto = run_cli("score", str(drop), "--json")
    assert auto.returncode == 0, auto.stderr[-2000:]
    assert json.loads(auto.stdout.strip().splitlines()[-1])["engine"] in ("onnx", "openvino")
    exports = read_metadata(home / "models" / version).exports
    assert (home / "models" / version / exports.export_of("onnx").file).is_file()
    assert "exporting it now, once" in auto.stderr
    named = run_cli("score", str(drop), "--engine", "onnx-int8", "--json")
    assert named.returncode == 2 and f"visionflow models export {version} --int8" in named.stderr
    assert "exporting it now" not in named.stderr

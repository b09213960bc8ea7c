"""Installing visionflow adds one import name: `visionflow`, and nothing generic beside it."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = (
    "import importlib.util, json; "
    "print(json.dumps({name: importlib.util.find_spec(name) is not None for name in "
    "['visionflow', 'visionflow.tasks.ingest.scan_files', 'visionflow.flows.train', "
    "'visionflow.deployments.serve', 'visionflow.data_contracts.gx_validation', "
    "'tasks', 'flows', 'deployments', 'data_contracts']}))"
)


def test_from_a_neutral_folder_only_the_visionflow_names_import(tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    assert [name for name, present in found.items() if present] == [
        "visionflow",
        "visionflow.tasks.ingest.scan_files",
        "visionflow.flows.train",
        "visionflow.deployments.serve",
        "visionflow.data_contracts.gx_validation",
    ]


def test_the_contract_suites_ship_with_the_package(tmp_path):
    probe = (
        "from visionflow.data_contracts.contract_suites import SUITES_DIR; "
        "print(sorted(path.name for path in SUITES_DIR.glob('*.json')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['predictions.json', 'processed_parquet.json', 'raw_manifest.json']"


def test_python_dash_m_visionflow_is_the_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "visionflow", "--help"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "Usage: visionflow" in result.stdout
    for command in ("ingest", "train", "score", "serve", "deploy"):
        assert command in result.stdout

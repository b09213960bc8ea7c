"""The load benchmark, small: drops through a real `visionflow serve`, and a large drop's stand-in.

The full run (1,000 drops, 200,000 images) is in docs/BENCHMARKS.md; this one checks the same
script on CIFAR-10 JPEGs at a size the suite can afford: every file one row, nothing predicted
twice, and a burst of drops scored by one or two runs, not one each.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPOSITORY_ROOT, SHARED_CIFAR10
from tests.scoring_helpers import register_tiny_model

pytestmark = pytest.mark.e2e

DROPS = 20  # Drops put into the inbox at once.


def test_small_load_is_scored_exactly_once(tmp_path):
    register_tiny_model(tmp_path / "models-home" / "models")
    output = tmp_path / "load.json"
    command = [sys.executable, "benchmarks/load_benchmark.py", "--models-home", str(tmp_path / "models-home"),
               "--source", str(SHARED_CIFAR10 / "test" / "cat"), "--drops", str(DROPS), "--images-per-drop", "5",
               "--large-images", "500", "--scratch", str(tmp_path), "--output", str(output)]  # fmt: skip
    subprocess.run(command, cwd=REPOSITORY_ROOT, check=True, capture_output=True, timeout=900)
    results = json.loads(output.read_text())

    for part, images in (("inbox", DROPS * 5), ("inbox_baseline_one_drop", DROPS * 5), ("large_tenth", 50),
                         ("large", 500)):  # fmt: skip
        check = results[part]["check"]
        assert check["exactly_once"], (part, check["problems"])
        assert check["rows"] == check["files"] == check["contents_predicted"] == images
    inbox = results["inbox"]
    assert inbox["failed_drops"] == []
    assert 1 <= inbox["flow_runs"].get("score-drops COMPLETED", 0) <= 2
    assert inbox["peak_memory_mib"]["prefect server"]["processes"] == 1
    assert results["large"]["exit_code"] == 0
    assert results["large"]["peak_memory_mib"]["visionflow score"]["processes"] == 1

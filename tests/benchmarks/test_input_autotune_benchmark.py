"""The input-autotuning benchmark: both sides time every epoch of the same real training step."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT


def test_both_sides_are_timed_epoch_by_epoch_and_bad_arguments_are_refused():
    command = [sys.executable, "benchmarks/input_autotune_benchmark.py", "--preset", "tiny"]
    finished = subprocess.run(
        [*command, "--images", "64", "--epochs", "2"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report["preset"] == "tiny" and report["images"] == 64
    assert set(report["seconds"]) == {"autotuning off (training's pipeline)", "autotuning on"}
    for times in report["seconds"].values():
        assert len(times) == 2 and all(seconds > 0 for seconds in times)
    refused = subprocess.run([*command, "--epochs", "0"], cwd=REPOSITORY_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "--images and --epochs must be at least 1" in refused.stderr
    unknown = subprocess.run(
        [sys.executable, *command[1:2], "--preset", "huge"], cwd=REPOSITORY_ROOT, capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "unknown preset 'huge'" in unknown.stderr

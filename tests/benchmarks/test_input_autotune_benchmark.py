"""The input-autotuning benchmark: both pipelines time every epoch of the same real training step."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT

COMMAND = [sys.executable, "benchmarks/input_autotune_benchmark.py"]


def run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *arguments], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600)


def test_both_pipelines_are_timed_epoch_by_epoch_with_autotuning_as_labelled():
    finished = run("--presets", "tiny", "--images", "64", "--epochs", "2")
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    (result,) = report["results"]
    assert result["side"] == "tiny" and report["images"] == 64
    # The training pipeline runs without autotuning; the comparison side really has it on.
    assert result["autotune_enabled"] == {"off": False, "on": True}
    for times in result["seconds"].values():
        assert len(times) == 2 and all(seconds > 0 for seconds in times)


def test_bad_arguments_are_refused_with_one_line():
    refused = run("--presets", "tiny", "--epochs", "0")
    assert refused.returncode == 2 and "--images and --epochs must be at least 1" in refused.stderr
    unknown = run("--presets", "huge")
    assert unknown.returncode == 2 and "unknown preset huge" in unknown.stderr

"""The step-rate benchmark: every side's epochs are timed in turn, and the rates compare to the first side."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT

COMMAND = [sys.executable, "benchmarks/step_rate_benchmark.py"]


def run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *arguments], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600)


def test_every_side_is_timed_for_every_round_and_compared_to_the_first():
    variant = ["--variant", "tiny_batch8", "tiny", '{"train": {"batch_size": 8}}']
    finished = run("--presets", "tiny", *variant, "--images", "64", "--rounds", "2")
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    first, second = report["results"]
    assert (first["side"], second["side"], report["images"]) == ("tiny", "tiny_batch8", 64)
    for result in (first, second):
        assert len(result["seconds"]) == 2 and all(seconds > 0 for seconds in result["seconds"])
    assert first["rate_ratio"] == 1.0
    assert abs(second["rate_ratio"] - first["median_seconds"] / second["median_seconds"]) < 1e-9
    assert "| tiny_batch8 |" in finished.stdout


def test_bad_arguments_are_refused_with_one_line():
    refused = run("--presets", "tiny", "--rounds", "0")
    assert refused.returncode == 2 and "--images and --rounds must be at least 1" in refused.stderr
    unknown = run("--presets", "huge")
    assert unknown.returncode == 2 and "unknown preset huge" in unknown.stderr

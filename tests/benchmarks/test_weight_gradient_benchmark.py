"""The weight-gradient benchmark: both ways timed for every 3x3 conv, and they agree."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT

BENCHMARK = [sys.executable, "benchmarks/weight_gradient_benchmark.py", "--presets", "tiny", "--repeats", "1"]


def test_both_ways_give_the_same_gradient_for_every_conv_and_a_bad_batch_is_refused():
    finished = subprocess.run([*BENCHMARK, "--batch", "8"], cwd=REPOSITORY_ROOT, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    # tiny: conv1 reads the 3 channels of 32x32 images into 8 filters, conv2 8 channels of 16x16 into 16.
    shapes = [(row["layer"], tuple(row["input"]), tuple(row["kernel"])) for row in report["results"]]
    assert shapes == [("conv1", (32, 32, 3), (3, 3, 3, 8)), ("conv2", (16, 16, 8), (3, 3, 8, 16))]
    for row in report["results"]:
        assert row["dtype"] == "float32" and row["largest_relative_difference"] < 1e-4
        assert row["kernel_ms"] > 0 and row["patches_ms"] > 0
    refused = subprocess.run([*BENCHMARK, "--batch", "0"], cwd=REPOSITORY_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "--batch and --repeats must be at least 1" in refused.stderr

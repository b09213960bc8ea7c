"""The FLOP/s benchmark: every side measured under every thread setting asked for, each in its own process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT

BENCHMARK = [sys.executable, "benchmarks/flops_benchmark.py", "--presets", "tiny", "--images", "64", "--epochs", "2"]


def test_sides_are_measured_under_each_thread_setting_and_a_bad_setting_is_refused():
    variant = ["--variant", "tiny32", "tiny", '{"train": {"batch_size": 32}}']
    command = [*BENCHMARK, *variant, "--threads", "1,1", "2,2"]
    finished = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    measured = [(result["preset"], result["threads"], result["batch_size"]) for result in report["results"]]
    assert measured == [("tiny", "1,1", 16), ("tiny32", "1,1", 32), ("tiny", "2,2", 16), ("tiny32", "2,2", 32)]
    for result in report["results"]:
        # tiny's forward pass: conv1 3 to 8 filters at 32x32, conv2 8 to 16 at 16x16, dense 1,024 to 32 to 10.
        assert result["forward_mflops_per_image"] > 2 * (32 * 32 * 8 * 27 + 16 * 16 * 16 * 72) / 1e6
        assert result["images_per_second"] > 0 and result["training_gflops"] > 0
    refused = subprocess.run([*BENCHMARK, "--threads", "two"], cwd=REPOSITORY_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "write INTER,INTRA" in refused.stderr

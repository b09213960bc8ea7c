"""The step profile: every conv layer of a real training step gets its three passes timed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT


def test_the_tiny_presets_step_is_profiled_conv_by_conv_and_a_bad_step_count_is_refused():
    command = [sys.executable, "benchmarks/step_profile.py", "--presets", "tiny", "--steps", "3"]
    finished = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report["machine"]["cores"] >= 1
    (result,) = report["results"]
    rows = {row["layer"]: row for row in result["convolutions"]}
    # tiny: conv1 reads the 3 input channels into 8 filters at 32x32, conv2 8 into 16 at 16x16.
    assert list(rows) == ["conv1", "conv2"]
    assert rows["conv1"]["forward_mflop_per_image"] == round(2 * 32 * 32 * 8 * 9 * 3 / 1e6, 2)
    assert rows["conv2"]["forward_mflop_per_image"] == round(2 * 16 * 16 * 16 * 9 * 8 / 1e6, 2)
    for row in rows.values():
        assert row["forward seconds"] > 0 and row["weight gradient seconds"] > 0
    # conv1 reads the images, which need no gradient; conv2's input gradient flows back to conv1.
    assert "input gradient seconds" not in rows["conv1"] and rows["conv2"]["input gradient seconds"] > 0
    refused = subprocess.run([*command[:-1], "0"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--steps must be at least 1" in refused.stderr
    unknown = [sys.executable, "benchmarks/step_profile.py", "--presets", "huge"]
    refused = subprocess.run(unknown, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "unknown preset huge" in refused.stderr

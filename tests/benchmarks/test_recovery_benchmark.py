"""The recovery benchmark, small: a cut part and a deleted output folder are written again from the ledger.

The full run (20,000 images, two repeats) is in docs/SCALING.md; this one runs the same script
on a drop of 40 images: every rerun exits 0 with one row per file, scores nothing again, and
names what it repaired in a warning.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT


def test_every_damage_is_repaired_from_the_ledger_without_scoring_again(tmp_path):
    output = tmp_path / "recovery.json"
    command = [sys.executable, "benchmarks/recovery_benchmark.py", "--images", "40", "--repeats", "1",
               "--output", str(output), "--json"]  # fmt: skip
    subprocess.run(command, cwd=REPOSITORY_ROOT, check=True, capture_output=True, timeout=600)
    results = {entry["side"]: entry for entry in json.loads(output.read_text())["results"]}

    assert list(results) == ["first scoring", "nothing", "part-cut", "folder-deleted"]
    assert results["first scoring"]["scored"] == 40
    for side in ("nothing", "part-cut", "folder-deleted"):
        entry = results[side]
        assert entry["exit_code"] == 0 and entry["one_row_per_file"], side
        assert (entry["scored"], entry["already_scored"]) == (0, 40), side
    assert any("was damaged (moved to" in line for line in results["part-cut"]["warnings"])
    assert any("output folder" in line and "was lost" in line for line in results["folder-deleted"]["warnings"])
    assert not any("written again" in line for line in results["nothing"]["warnings"])

"""The frontier benchmark's summary and plot, on runs made up here (the runs themselves take hours)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from frontier_benchmark import draw, markdown_table, plot, slug, summarize  # noqa: E402
from load_benchmark import machine  # noqa: E402

from visionflow.network.hardware import MACHINE_KINDS


def run(preset: str, seed: int, accuracy: float, seconds: float, on_validation: bool = False) -> dict:
    return {
        "preset": preset, "seed": seed, "epochs": 2, "test_accuracy": accuracy, "training_seconds": seconds,
        "epoch_seconds": [seconds / 2, seconds / 2], "val_accuracy": [0.5, accuracy],
        "trained_on_validation": on_validation,
    }  # fmt: skip


RUNS = [run("seed", 0, 0.70, 100), run("large", 0, 0.88, 190, True), run("seed", 1, 0.72, 110),
        run("large", 1, 0.90, 230, True)]  # fmt: skip


def test_rows_give_the_mean_and_spread_over_seeds_and_time_against_the_first_preset():
    rows = summarize(RUNS, ["seed", "large"])
    assert [row["preset"] for row in rows] == ["seed", "large"]
    assert rows[1]["accuracy_mean"] == pytest.approx(0.89) and rows[1]["accuracy_spread"] == pytest.approx(0.02)
    assert rows[0]["seconds_mean"] == 105 and rows[1]["time_ratio"] == pytest.approx(210 / 105, abs=0.01)
    assert "| `large` | 2 | 2 | 0.8900 (0.0200) | 210 (40) | 2.00x |" in markdown_table(rows)


def test_a_run_that_trained_on_its_validation_split_is_drawn_dashed(tmp_path):
    figure = draw(RUNS, ["seed", "large"], "title")
    curves = [line for line in figure.axes[0].lines if len(line.get_xdata()) == 2]
    assert [line.get_linestyle() for line in curves] == ["-", "-", "--", "--"]
    plot(RUNS, ["seed", "large"], "title", tmp_path / "plots" / "frontier.png")
    assert (tmp_path / "plots" / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_each_kind_of_machine_gets_its_own_picture_named_for_it():
    described = machine()
    assert described["kind"] in MACHINE_KINDS and described["cores"] >= 1
    assert slug("Intel(R) Xeon(R) Platinum 8488C") == "intel-r-xeon-r-platinum-8488c"
    assert slug("AMD EPYC") == "amd-epyc"

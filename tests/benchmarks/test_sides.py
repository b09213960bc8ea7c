"""The benchmarks' sides: presets as they are, variants with settings changed, bad ones refused."""

from __future__ import annotations

import argparse
import sys

import pytest

from tests.conftest import REPOSITORY_ROOT

sys.path.insert(0, str(REPOSITORY_ROOT / "benchmarks"))
from sides import add_side_arguments, requested_sides  # noqa: E402


def sides_of(command_line: list[str]):
    parser = argparse.ArgumentParser()
    add_side_arguments(parser, default_presets=["default"])
    return requested_sides(parser, parser.parse_args(command_line))


def test_a_variant_changes_only_the_settings_it_names():
    sides = dict(
        sides_of(["--variant", "bs256", "default", '{"train": {"batch_size": 256}, "model": {"precision": "float32"}}'])
    )
    assert list(sides) == ["default", "bs256"]
    assert sides["bs256"].train.batch_size == 256 and sides["default"].train.batch_size == 128
    assert sides["bs256"].model.precision == "float32" and sides["default"].model.precision == "auto"
    assert sides["bs256"].train.learning_rate == sides["default"].train.learning_rate
    assert sides["bs256"].model.conv_filters == sides["default"].model.conv_filters


@pytest.mark.parametrize(
    ("command_line", "reason"),
    [
        (["--presets", "huge"], "unknown preset huge"),
        (["--variant", "x", "default", "{not json"], "CHANGES is not JSON"),
        (["--variant", "x", "default", '{"train": {"batch_sise": 256}}'], "TrainConfig has no field batch_sise"),
        (["--variant", "x", "default", '{"train": {"batch_size": 0}}'], "batch_size"),
        (["--variant", "x", "default", '{"optimiser": {}}'], 'with "model" and/or "train" keys'),
        (["--presets"], "nothing to run"),
    ],
)
def test_a_bad_side_ends_the_run_with_one_line(command_line, reason, capsys):
    with pytest.raises(SystemExit) as stopped:
        sides_of(command_line)
    assert stopped.value.code == 2
    assert reason in capsys.readouterr().err

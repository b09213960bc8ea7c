"""The `visionflow` executable: exit codes as the command set them, and no teardown to wait for."""

from __future__ import annotations

import subprocess

import pytest

from visionflow.cli.entry_point import _exit_code

from tests.conftest import VISIONFLOW


@pytest.mark.parametrize("code, expected", [(None, 0), (0, 0), (4, 4), ("visionflow: a reason", 1)])
def test_system_exit_codes_become_process_exit_codes(code, expected, capsys):
    assert _exit_code(code) == expected
    assert ("a reason" in capsys.readouterr().err) == isinstance(code, str)


def test_help_exits_0_and_an_unknown_command_exits_2_with_a_reason():
    helped = subprocess.run([*VISIONFLOW, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "score" in helped.stdout
    unknown = subprocess.run([*VISIONFLOW, "nonsense"], capture_output=True, text=True, timeout=60, check=False)
    assert unknown.returncode == 2 and "No such command 'nonsense'" in unknown.stderr

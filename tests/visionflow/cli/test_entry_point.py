"""The `visionflow` executable: exit codes as the command set them, its exit handlers run, no teardown to wait for."""

from __future__ import annotations

import subprocess
import sys

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


ENDED_AS_A_COMMAND_ENDS = """
import atexit, sys
from pathlib import Path
from visionflow.cli.entry_point import end_process
atexit.register(lambda: Path(sys.argv[1]).write_text("ran"))
end_process(5)
"""


def test_a_command_ends_with_its_code_after_its_exit_handlers(tmp_path):
    handled = tmp_path / "handled"
    command = [sys.executable, "-c", ENDED_AS_A_COMMAND_ENDS, str(handled)]
    ended = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert ended.returncode == 5, ended.stderr[-2000:]
    assert handled.read_text() == "ran", "the atexit handlers (the temporary server's stop among them) ran"

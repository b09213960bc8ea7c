"""Validations in a worker process (as a command runs them) give what they give in this one."""

from __future__ import annotations

import multiprocessing

import pytest

from visionflow.data_contracts import gx_validation

from tests.data_contracts.test_contracts import failed, good_manifest, set_first, validate_raw


@pytest.fixture
def validation_process(monkeypatch):
    """A started validation process for this test alone; shut down after it."""
    monkeypatch.setattr(gx_validation, "_VALIDATION_PROCESS", None)
    gx_validation.start_validation_process()
    pool = gx_validation._VALIDATION_PROCESS
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def test_a_report_from_the_process_is_the_one_this_process_gives(validation_process, monkeypatch):
    broken = set_first("in_other_split", True)(good_manifest())
    with monkeypatch.context() as patched:
        patched.setattr(gx_validation, "_VALIDATION_PROCESS", None)
        here = validate_raw(broken)
    with monkeypatch.context() as patched:

        def not_here(*arguments):
            raise AssertionError("validated in this process, not in the validation process")

        patched.setattr(gx_validation, "_run_gx", not_here)
        in_process = validate_raw(broken)
    assert failed(in_process) == failed(here) and failed(here), "a leak fails the same expectation either way"
    assert in_process.outcomes == here.outcomes


def test_a_dead_validation_process_is_dropped_and_the_validation_done_here(validation_process, caplog):
    for child in multiprocessing.active_children():
        if child.pid in {process.pid for process in validation_process._processes.values()}:
            child.kill()
            child.join()
    report = validate_raw(good_manifest())
    assert report.success and gx_validation._VALIDATION_PROCESS is None
    assert "the validation process ended unexpectedly" in caplog.text


def test_an_unknown_suite_is_reported_from_the_process_as_from_here(validation_process):
    with pytest.raises(ValueError, match="no data contract named 'nope'"):
        gx_validation.validate(good_manifest(), "nope", {}, target="manifest")
    assert gx_validation._VALIDATION_PROCESS is validation_process, "a refusal is not a dead process"


STOP_AFTER_A_VALIDATION = """
from visionflow.cli.entry_point import end_process
from visionflow.data_contracts import gx_validation
from tests.data_contracts.test_contracts import good_manifest, validate_raw
if __name__ == "__main__":
    gx_validation.start_validation_process()
    print(validate_raw(good_manifest()).success, flush=True)
    end_process(0)
"""


def test_a_validation_process_ended_as_a_command_ends_leaves_no_semaphore_behind(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPOSITORY_ROOT

    script = tmp_path / "stop_after_a_validation.py"
    script.write_text(STOP_AFTER_A_VALIDATION)
    environment = {**__import__("os").environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=environment, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr[-2000:]
    assert "leaked semaphore" not in result.stderr

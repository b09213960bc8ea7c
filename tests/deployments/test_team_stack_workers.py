"""The team stack's workers as settings: their piece names, their names in the pool, and their bounds."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from visionflow.deployments.team_stack_config import TeamStackConfig
from visionflow.deployments.team_stack_workers import worker_name


def test_a_second_worker_is_a_piece_of_its_own_started_before_the_inbox_watcher(tmp_path):
    config = TeamStackConfig(home=tmp_path / "home", state=tmp_path / "state", workers=2)

    assert config.pieces == ["postgres", "redis", "api-1", "api-2", "services", "balancer", "worker", "worker-2",
                             "inbox-watcher"]  # fmt: skip
    assert [worker_name(piece) for piece in config.worker_pieces] == [
        "visionflow-team-worker", "visionflow-team-worker-2"
    ]  # fmt: skip


def test_one_worker_keeps_the_names_a_stack_has_always_had(tmp_path):
    config = TeamStackConfig(home=tmp_path / "home", state=tmp_path / "state")

    assert config.worker_pieces == ["worker"] and worker_name("worker") == "visionflow-team-worker"


def test_a_stack_without_workers_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="workers"):
        TeamStackConfig(home=tmp_path / "home", state=tmp_path / "state", workers=0)


def test_up_with_no_workers_exits_2_with_one_line_and_starts_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "visionflow.deployments.team_stack", "up", "--home", str(tmp_path / "home"),
         "--state", str(tmp_path / "state"), "--workers", "0"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip

    assert result.returncode == 2, result.stdout + result.stderr
    assert "workers" in result.stdout + result.stderr and "greater than or equal to 1" in result.stdout + result.stderr
    assert not (tmp_path / "state" / "processes.json").exists()

"""Fixtures of the flow tests: the CLI run as a user runs it, against the session's Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

VISIONFLOW = [sys.executable, "-m", "flows.cli"]


@pytest.fixture
def run_cli(prefect_server, home):
    """Run the CLI against the test session's Prefect server, with its own VISIONFLOW_HOME."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_HOME", None)

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*VISIONFLOW, *arguments], capture_output=True, text=True, env=environment, timeout=300, check=False
        )

    return run

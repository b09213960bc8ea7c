"""A command's temporary Prefect server: started on a free port, answering as Prefect's API, stopped at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from visionflow.errors import VisionflowError
from visionflow.processes.temporary_server import TemporaryServer, answers_health_check, start_temporary_server


def status_of(url: str) -> int:
    """The HTTP status a GET of url answers with."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_command_without_an_api_url_gets_a_server_that_answers_and_stops(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = start_temporary_server()
    try:
        assert server is not None and os.environ["PREFECT_API_URL"] == server.api_url
        assert server.api_url.startswith("http://127.0.0.1:")
        server.wait_until_healthy()
        assert answers_health_check(server.api_url)
        with urllib.request.urlopen(f"{server.api_url}/version", timeout=10) as response:
            assert json.loads(response.read()), "Prefect's API names its version"
        address = server.api_url.removesuffix("/api")
        assert status_of(f"{address}/") == 404, "the ephemeral app serves no UI"
    finally:
        server.stop()
    assert server.process.poll() is not None, "the server process has ended"
    assert not answers_health_check(server.api_url)


def test_a_command_given_an_api_url_starts_no_server(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert start_temporary_server() is None
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:9/api"


def test_a_server_that_exits_before_answering_says_what_to_do():
    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    ended.wait(timeout=60)
    server = TemporaryServer(ended, "http://127.0.0.1:9/api")
    with pytest.raises(VisionflowError, match="exited with code 3 before answering; set PREFECT_API_URL"):
        server.wait_until_healthy(timeout=30)

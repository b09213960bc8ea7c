"""A round trip through a real Label Studio server on 127.0.0.1: a review set out as tasks, labelled
through the REST API as a labeller's browser would, exported, and read back as labels.

Label Studio lives in a virtual environment of its own (its Django pins clash with visionflow's),
VISIONFLOW_LABEL_STUDIO_VENV or ~/.cache/visionflow/label-studio-venv. Where it is absent the test
skips, unless VISIONFLOW_REQUIRE_LABEL_STUDIO=1 (which CI sets, after installing it), in which case
it fails: an integration that is never run is not tested.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from visionflow.labels.label_studio import labelling_config, read_label_studio_export, write_review_tasks
from visionflow.labels.labels_store import Rejection
from visionflow.labels.review_sets import ClassGuess, ReviewItem, ReviewSet

from tests.conftest import write_image
from tests.postgres_helpers import free_port

pytestmark = pytest.mark.label_studio

VENV = Path(os.environ.get("VISIONFLOW_LABEL_STUDIO_VENV", Path.home() / ".cache" / "visionflow" / "label-studio-venv"))
USER = "labeller@example.com"
TOKEN = "visionflow-test-token-0123456789"  # A legacy API token (Authorization: Token ...), set at start.
START_TIMEOUT_SECONDS = 300  # The first start migrates a fresh database: about 30 s on 2 cores.
CLASSES = ["cat", "dog", "bird"]
REASON_WORDS = ("skipped", "no annotation", "no `label`")  # What each kind of rejection says.


@dataclass(frozen=True)
class LabelStudio:
    """A running server: where it listens, the folder it serves local files from, and its API."""

    url: str
    document_root: Path

    def request(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Token {TOKEN}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self.request(method, path, body))


def _server_environment(root: Path, document_root: Path) -> dict[str, str]:
    """Only what the server needs: Label Studio also reads unprefixed names (HOST, PORT, USERNAME), so
    the test's own environment is not passed on."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",  # No call to PyPI for the newest version.
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
    }


def _wait_until_up(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Label Studio exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"Label Studio did not answer in {START_TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """End the server's whole process group, and check nothing of it is left."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
    time.sleep(0.5)  # Children leave the group a moment after the leader exits.
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    executable = VENV / "bin" / "label-studio"
    if not executable.is_file():
        message = (
            f"Label Studio is not installed at {VENV} "
            "(python3.11 -m venv DIR && DIR/bin/pip install -r .ci/label-studio-requirements.txt)"
        )
        if os.environ.get("VISIONFLOW_REQUIRE_LABEL_STUDIO") == "1":
            pytest.fail(f"{message}, and VISIONFLOW_REQUIRE_LABEL_STUDIO=1 asks for it")
        pytest.skip(message)
    root = tmp_path_factory.mktemp("label-studio")
    document_root = root / "files"
    document_root.mkdir()
    port = free_port()
    log = root / "server.log"
    command = [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    command += ["--username", USER, "--password", "labeller-password-1", "--user-token", TOKEN]
    command += ["--enable-legacy-api-token"]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, env=_server_environment(root, document_root), stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=root,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(process, url, log)
        yield LabelStudio(url=url, document_root=document_root)
    finally:
        _stop(process)


def _review(drop: Path) -> ReviewSet:
    """Four tiny images in a drop under the server's document root, and a review set of them."""
    items = []
    for index, (guess, second) in enumerate([("cat", "dog"), ("dog", "cat"), ("bird", "cat"), ("cat", "bird")]):
        image = write_image(drop / f"image-{index}.png", (40 * index, 90, 200 - 40 * index), seed=index)
        top = [ClassGuess(class_name=guess, probability=0.5), ClassGuess(class_name=second, probability=0.4)]
        items.append(
            ReviewItem(
                sha256=hashlib.sha256(image.read_bytes()).hexdigest(),
                path=str(image),
                drop_path=image.name,
                top=top,
                margin=0.1,
                reason="least-sure",
            )  # fmt: skip
        )
    return ReviewSet(
        review_id="drop-v0001-20261207T000000-abc123", drop=str(drop), drop_name="drop", model_version="v0001",
        classes=CLASSES, least_sure=4, random=0, seed=0, created_at="2026-12-07T00:00:00+00:00", items=items,
    )  # fmt: skip


def _choice(class_name: str) -> dict[str, Any]:
    return {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [class_name]}}


def test_a_review_labelled_in_label_studio_comes_back_as_labels(label_studio: LabelStudio, tmp_path: Path) -> None:
    drop = label_studio.document_root / "drop"
    review = _review(drop)
    project = label_studio.api(
        "POST", "/api/projects", {"title": "visionflow review", "label_config": labelling_config(CLASSES)}
    )
    # Label Studio serves a local file only under a Local Storage of the project.
    label_studio.api(
        "POST", "/api/storages/localfiles", {"project": project["id"], "path": str(drop), "use_blob_urls": True}
    )
    tasks_file = write_review_tasks(review, tmp_path / "tasks.json", document_root=str(label_studio.document_root))
    imported = label_studio.api("POST", f"/api/projects/{project['id']}/import", json.loads(tasks_file.read_text()))
    assert (imported["task_count"], imported["prediction_count"]) == (4, 4)

    tasks = label_studio.api("GET", f"/api/tasks?project={project['id']}")["tasks"]
    by_sha = {task["data"]["sha256"]: task for task in tasks}
    for item in review.items:  # Every task shows its own image, and the model's guess as a pre-annotation.
        task = by_sha[item.sha256]
        assert label_studio.request("GET", task["data"]["image"]) == Path(item.path).read_bytes()
        predictions = label_studio.api("GET", f"/api/predictions?task={task['id']}")
        assert [prediction["result"] for prediction in predictions] == [[_choice(item.top[0].class_name)]]

    agree, correct, skip, unlabelled = (by_sha[item.sha256]["id"] for item in review.items)
    label_studio.api("POST", f"/api/tasks/{agree}/annotations", {"result": [_choice("cat")], "lead_time": 2.0})
    label_studio.api("POST", f"/api/tasks/{correct}/annotations", {"result": [_choice("bird")], "lead_time": 3.0})
    label_studio.api("POST", f"/api/tasks/{skip}/annotations", {"result": [], "was_cancelled": True})

    # The UI's Export button: a snapshot naming annotators by e-mail, downloaded as JSON and JSON_MIN.
    options = {"serialization_options": {"annotations__completed_by": {"only_id": False}}}
    snapshot = label_studio.api("POST", f"/api/projects/{project['id']}/exports", options)
    exports = {}
    for export_type in ("JSON", "JSON_MIN"):
        exports[export_type] = tmp_path / f"export-{export_type}.json"
        download = f"/api/projects/{project['id']}/exports/{snapshot['id']}/download?exportType={export_type}"
        exports[export_type].write_bytes(label_studio.request("GET", download))
    every_task = tmp_path / "export-all-tasks.json"
    every_task.write_bytes(
        label_studio.request("GET", f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true")
    )

    expected = {(review.items[0].sha256, "cat"), (review.items[1].sha256, "bird")}
    # JSON names the skipped task and the unlabelled one; JSON_MIN leaves skipped annotations out.
    expected_rejections = {
        "JSON": {skip: "skipped", unlabelled: "no annotation"},
        "JSON_MIN": {unlabelled: "no `label`"},
    }
    for export_type, file in exports.items():
        rows, rejected = read_label_studio_export(file)
        assert {(row.sha256, row.class_name) for row in rows} == expected, export_type
        assert {(row.source, row.reviewer, row.review_id) for row in rows} == {("label-studio", USER, review.review_id)}
        assert {row.path for row in rows} == {review.items[0].path, review.items[1].path}
        assert all(row.labelled_at for row in rows)
        assert _reasons(rejected) == expected_rejections[export_type], export_type

    rows, rejected = read_label_studio_export(every_task)  # The quick export names annotators by user id.
    user_id = label_studio.api("GET", "/api/current-user/whoami")["id"]
    assert {(row.sha256, row.class_name, row.reviewer) for row in rows} == {
        (sha, class_name, f"label-studio user {user_id}") for sha, class_name in expected
    }
    assert _reasons(rejected) == expected_rejections["JSON"]


def _reasons(rejected: list[Rejection]) -> dict[int, str]:
    """Each rejection's task id, and the first words of its reason that say why."""
    found = {}
    for rejection in rejected:
        task_id = int(rejection.origin.split()[1])
        found[task_id] = next(
            words for words in ("skipped", "no annotation", "no `label`") if words in rejection.reason
        )
    return found

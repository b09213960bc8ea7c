"""Label Studio's formats without a server: the labelling config, the task import file, and the export
reader on exports a real Label Studio 1.23 wrote (data/label_studio_export*.json, made by
test_label_studio_server.py: task 1 labelled cat, task 2 bird, task 3 skipped, task 4 unlabelled)."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from visionflow.errors import BadInputError
from visionflow.labels.label_studio import (
    labelling_config,
    local_files_url,
    read_label_studio_export,
    review_tasks,
    write_review_tasks,
)
from visionflow.labels.review_sets import NOT_SURE, ClassGuess, ReviewItem, ReviewSet

DATA = Path(__file__).parent / "data"
EXPORT = DATA / "label_studio_export.json"  # The UI's export: JSON, annotators named by e-mail.
EXPORT_MIN = DATA / "label_studio_export_min.json"  # The same snapshot as JSON_MIN.
CAT_SHA = "c17635f2354c8eca7fcb99955bb84ce0613d3fcc40e0445a187814ddc6eeb65b"
BIRD_SHA = "1f3895cf9e6637f5caaaf1eb812e7cc90276f50fa62a5c29455866ac66a49ce2"
REVIEW_ID = "drop-v0001-20261207T000000-abc123"


def _review(paths: list[str]) -> ReviewSet:
    items = [
        ReviewItem(sha256=f"{index:064x}", path=path, drop_path=Path(path).name, margin=0.2, reason="least-sure",
                   top=[ClassGuess(class_name="dog", probability=0.55), ClassGuess(class_name="cat", probability=0.35)])
        for index, path in enumerate(paths)
    ]  # fmt: skip
    return ReviewSet(
        review_id="r-1", drop="/drops/d", drop_name="d", model_version="v0007", classes=["cat", "dog"], least_sure=1,
        random=len(items) - 1, seed=3, created_at="2026-12-07T00:00:00+00:00", items=items,
    )  # fmt: skip


def _write(tmp_path: Path, document: Any) -> Path:
    file = tmp_path / "export.json"
    file.write_text(json.dumps(document))
    return file


def _fixture() -> list[dict[str, Any]]:
    return json.loads(EXPORT.read_text())


def _reasons(rejected: list) -> dict[str, str]:
    return {rejection.origin: rejection.reason for rejection in rejected}


def test_the_config_offers_one_single_choice_per_class_and_not_sure() -> None:
    view = ElementTree.fromstring(labelling_config(["cat", "dog"]))
    image, choices = view.find("Image"), view.find("Choices")
    assert (image.get("name"), image.get("value")) == ("image", "$image")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("label", "image", "single")
    assert [choice.get("value") for choice in choices.findall("Choice")] == ["cat", "dog", NOT_SURE]


def test_the_config_escapes_class_names_and_can_leave_not_sure_out() -> None:
    awkward = ['a "quoted" <class> & more', "it's"]
    view = ElementTree.fromstring(labelling_config(awkward, not_sure=False))
    assert [choice.get("value") for choice in view.iter("Choice")] == awkward


def test_a_config_needs_a_class() -> None:
    with pytest.raises(BadInputError, match="at least one class"):
        labelling_config([])


def test_tasks_carry_the_image_url_the_content_and_the_model_guess_as_a_prediction() -> None:
    review = _review(["/srv/files/drops/d/cat one.png", "/srv/files/drops/d/b.png"])
    tasks = review_tasks(review, lambda path: local_files_url(path, "/srv/files"))
    assert tasks[0] == {
        "data": {
            "image": "/data/local-files/?d=drops/d/cat%20one.png",
            "sha256": review.items[0].sha256,
            "path": "/srv/files/drops/d/cat one.png",
            "review_id": "r-1",
            "model_guess": "dog",
        },
        "predictions": [
            {
                "model_version": "v0007",
                "score": 0.55,
                "result": [
                    {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["dog"]}}
                ],
            }
        ],
    }
    assert [task["data"]["sha256"] for task in tasks] == [item.sha256 for item in review.items]


def test_the_default_image_url_is_relative_to_the_file_system_root() -> None:
    tasks = review_tasks(_review(["/srv/files/a.png"]))
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=srv/files/a.png"


def test_an_image_outside_the_document_root_is_refused_with_the_setting_to_change() -> None:
    with pytest.raises(BadInputError, match="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"):
        write_review_tasks(_review(["/elsewhere/a.png"]), Path("/nonexistent/tasks.json"), document_root="/srv/files")


def test_written_tasks_labelled_in_the_export_shape_read_back_as_labels(tmp_path: Path) -> None:
    review = _review(["/srv/files/a.png", "/srv/files/b.png"])
    tasks = json.loads(write_review_tasks(review, tmp_path / "tasks.json", document_root="/srv").read_text())
    for task_id, (task, class_name) in enumerate(zip(tasks, ["cat", "dog"], strict=True), start=1):
        result = [dict(task["predictions"][0]["result"][0], value={"choices": [class_name]})]
        task.update(id=task_id, annotations=[{"id": task_id, "completed_by": 4, "result": result}])
    rows, rejected = read_label_studio_export(_write(tmp_path, tasks))
    assert rejected == []
    assert [(row.sha256, row.path, row.class_name, row.review_id, row.reviewer) for row in rows] == [
        (review.items[0].sha256, "/srv/files/a.png", "cat", "r-1", "label-studio user 4"),
        (review.items[1].sha256, "/srv/files/b.png", "dog", "r-1", "label-studio user 4"),
    ]


def test_the_export_gives_a_label_per_submitted_annotation_and_says_why_the_rest_are_none() -> None:
    rows, rejected = read_label_studio_export(EXPORT)
    assert [(row.sha256, row.class_name, row.origin) for row in rows] == [
        (CAT_SHA, "cat", "task 1 annotation 1"),
        (BIRD_SHA, "bird", "task 2 annotation 2"),
    ]
    assert {(row.source, row.reviewer, row.review_id) for row in rows} == {
        ("label-studio", "labeller@example.com", REVIEW_ID)
    }
    assert all(row.path.endswith(".png") and row.labelled_at.startswith("2026-") for row in rows)
    reasons = _reasons(rejected)
    assert set(reasons) == {"task 3 annotation 3", "task 4"}
    assert "skipped" in reasons["task 3 annotation 3"] and "no annotation" in reasons["task 4"]


def test_the_minimal_export_gives_the_same_labels() -> None:
    rows, rejected = read_label_studio_export(EXPORT_MIN)
    expected, _ = read_label_studio_export(EXPORT)
    assert [row.model_dump() for row in rows] == [row.model_dump() for row in expected]
    assert list(_reasons(rejected)) == ["task 4"] and "nobody labelled" in rejected[0].reason


def test_a_task_naming_no_content_is_rejected_with_its_number(tmp_path: Path) -> None:
    tasks = _fixture()
    del tasks[0]["data"]["sha256"], tasks[0]["data"]["path"]
    rows, rejected = read_label_studio_export(_write(tmp_path, tasks))
    assert _reasons(rejected)["task 1"] == "no data.sha256 or data.path: not a task visionflow wrote"
    assert [row.class_name for row in rows] == ["bird"]


def test_a_content_named_by_path_alone_is_a_label(tmp_path: Path) -> None:
    tasks = _fixture()
    del tasks[1]["data"]["sha256"]
    rows, _ = read_label_studio_export(_write(tmp_path, tasks))
    assert [(row.sha256, row.class_name) for row in rows] == [(CAT_SHA, "cat"), (None, "bird")]
    assert rows[1].path == tasks[1]["data"]["path"]


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ([], "no result[].value.choices"),
        ([{"type": "choices", "value": {}}], "no result[].value.choices"),
        ([{"type": "choices", "value": {"choices": ["cat", "dog"]}}], "2 choices ['cat', 'dog']"),
    ],
)
def test_an_annotation_without_one_choice_is_rejected(tmp_path: Path, result: list, reason: str) -> None:
    tasks = _fixture()
    tasks[0]["annotations"][0]["result"] = result
    rows, rejected = read_label_studio_export(_write(tmp_path, tasks))
    assert reason in _reasons(rejected)["task 1 annotation 1"]
    assert [row.class_name for row in rows] == ["bird"]


def test_each_annotation_of_a_task_is_its_own_label(tmp_path: Path) -> None:
    tasks = _fixture()
    second = copy.deepcopy(tasks[0]["annotations"][0])
    second.update(id=9, completed_by={"id": 2, "email": "second@example.com"})
    second["result"][0]["value"] = {"choices": ["dog"]}
    tasks[0]["annotations"].append(second)
    rows, _ = read_label_studio_export(_write(tmp_path, tasks))
    assert [(row.class_name, row.reviewer, row.origin) for row in rows][:2] == [
        ("cat", "labeller@example.com", "task 1 annotation 1"),
        ("dog", "second@example.com", "task 1 annotation 9"),
    ]


def test_items_that_are_not_tasks_are_rejected_one_by_one(tmp_path: Path) -> None:
    rows, rejected = read_label_studio_export(_write(tmp_path, [*_fixture()[:1], 7, {"name": "x"}]))
    assert [row.class_name for row in rows] == ["cat"]
    assert _reasons(rejected) == {
        "item 2": "not a Label Studio task (a JSON object)",
        "item 3": "no sha256 or path: not a task visionflow wrote",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"sha256,label\nabc,cat\n", "is not JSON"),
        (b'{"id": 1, "data": {}}', "holds a JSON object, not a list of tasks"),
        (b"\xff\xfe\x00", "is not JSON"),
        (b'"labels"', "holds a JSON string, not a list of tasks"),
    ],
)
def test_a_file_that_is_no_export_is_one_error(tmp_path: Path, content: bytes, message: str) -> None:
    file = tmp_path / "export.json"
    file.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as raised:
        read_label_studio_export(file)
    assert str(file) in str(raised.value) and "JSON_MIN" in str(raised.value)


def test_a_missing_export_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot read the Label Studio export"):
        read_label_studio_export(tmp_path / "absent.json")

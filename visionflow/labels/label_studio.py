"""Label Studio for teams: a review set out as Label Studio tasks, and Label Studio's export back as labels.

This module is the only one that knows Label Studio's formats. A team creates an image
classification project with `labelling_config(classes)`, imports the file `write_review_tasks`
wrote (each task carries the model's best class as a pre-annotation, so a labeller confirms or
corrects it), labels, and exports the project as JSON (or JSON_MIN); `read_label_studio_export`
turns that export into LabelRows for the labels store.

Images are shown through Label Studio's local-files serving: the server runs with
LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a
folder above the drop, and the project has a Local Storage whose path is the drop's folder (Label
Studio serves a file only under such a storage, and refuses a storage path equal to the root).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from visionflow.atomic import write_json_atomically
from visionflow.errors import BadInputError
from visionflow.labels.labels_store import LabelRow, Rejection
from visionflow.labels.review_sets import NOT_SURE, ReviewSet
from visionflow.run_context import run_logger

IMAGE_NAME = "image"  # The Image tag's name, and the task data field holding the image URL.
CHOICES_NAME = "label"  # The Choices tag's name: annotations' from_name, and JSON_MIN's label column.
LOCAL_FILES_URL = "/data/local-files/?d="  # Label Studio's local-files serving, before the path.
SOURCE = "label-studio"
JSON_TYPES = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}  # For messages.


def labelling_config(classes: list[str], not_sure: bool = True) -> str:
    """Label Studio's labelling interface for the classes: the image, and one single choice among them.

    not_sure adds the review's "not sure / none of these" answer as a last choice; the labels
    store counts it as no label, as it does in the review flow."""
    if not classes:
        raise BadInputError("a Label Studio project needs at least one class to choose from")
    values = [*classes, NOT_SURE] if not_sure and NOT_SURE not in classes else list(classes)
    choices = "".join(f"\n    <Choice value={quoteattr(value)}/>" for value in values)
    return (
        f'<View>\n  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
        f'  <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="false">'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def local_files_url(path: str, document_root: str = "/") -> str:
    """The URL Label Studio serves a file under at its local-files root (relative to the server)."""
    file, root = PurePosixPath(path), PurePosixPath(document_root)
    if not file.is_absolute() or not file.is_relative_to(root):
        raise BadInputError(
            f"{path} is not under the Label Studio document root {document_root}: pass the folder the server's "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT names, one that holds the drop"
        )
    return LOCAL_FILES_URL + quote(str(file.relative_to(root)))


def review_tasks(review: ReviewSet, image_url: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """Label Studio's task import JSON: one task per review item, with the model's best class as a prediction.

    image_url turns an item's absolute path into the URL Label Studio shows; by default its
    local-files URL with the document root "/"."""
    to_url = image_url or local_files_url
    tasks = []
    for item in review.items:
        best = item.top[0]
        choice = {
            "from_name": CHOICES_NAME,
            "to_name": IMAGE_NAME,
            "type": "choices",
            "value": {"choices": [best.class_name]},
        }
        tasks.append(
            {
                "data": {
                    IMAGE_NAME: to_url(item.path),
                    "sha256": item.sha256,
                    "path": item.path,
                    "review_id": review.review_id,
                    "model_guess": best.class_name,
                },
                "predictions": [{"model_version": review.model_version, "score": best.probability, "result": [choice]}],
            }
        )
    return tasks


def write_review_tasks(review: ReviewSet, file: Path, document_root: str = "/") -> Path:
    """Write the review's tasks as a Label Studio import file; returns its path."""
    tasks = review_tasks(review, lambda path: local_files_url(path, document_root))
    written = write_json_atomically(file, tasks)
    run_logger(__name__).info("wrote %d Label Studio tasks of review %s to %s", len(tasks), review.review_id, written)
    return written


def read_label_studio_export(file: Path) -> tuple[list[LabelRow], list[Rejection]]:
    """The labels a Label Studio export (JSON or JSON_MIN) offers, and what offers none, each with its reason.

    Skipped annotations, tasks nobody labelled, and annotations without exactly one choice are
    rejections: an import reports them, it does not store them. (JSON_MIN leaves skipped annotations
    out altogether, so only the JSON export reports them.)"""
    tasks = _load_tasks(Path(file))
    rows: list[LabelRow] = []
    rejected: list[Rejection] = []
    for index, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            rejected.append(Rejection(origin=f"item {index}", reason="not a Label Studio task (a JSON object)"))
        elif "annotations" in task or "completions" in task or "data" in task:
            _read_task(task, index, rows, rejected)
        else:
            _read_minimal_record(task, index, rows, rejected)
    return rows, rejected


def _load_tasks(file: Path) -> list[Any]:
    try:
        document = json.loads(file.read_bytes())
    except OSError as error:
        raise BadInputError(f"cannot read the Label Studio export {file} ({error.strerror or error})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInputError(
            f"{file} is not JSON ({error}); export the Label Studio project as JSON or JSON_MIN"
        ) from None
    if not isinstance(document, list):
        raise BadInputError(
            f"{file} holds a JSON {JSON_TYPES.get(type(document), 'value')}, not a list of tasks; export the Label "
            "Studio project as "
            "JSON or JSON_MIN"
        )
    return document


def _task_origin(task: dict[str, Any], index: int) -> str:
    return f"task {task['id']}" if isinstance(task.get("id"), int | str) else f"item {index}"


def _read_task(task: dict[str, Any], index: int, rows: list[LabelRow], rejected: list[Rejection]) -> None:
    """One task of the JSON export: a row per submitted annotation, a rejection for each that offers none."""
    origin = _task_origin(task, index)
    data = task.get("data")
    if not isinstance(data, dict) or not (data.get("sha256") or data.get("path")):
        rejected.append(Rejection(origin=origin, reason="no data.sha256 or data.path: not a task visionflow wrote"))
        return
    annotations = task.get("annotations", task.get("completions")) or []
    if not isinstance(annotations, list) or not annotations:
        rejected.append(Rejection(origin=origin, reason="no annotation: nobody labelled it yet"))
        return
    for number, annotation in enumerate(annotations, start=1):
        where = f"{origin} annotation {annotation.get('id', number) if isinstance(annotation, dict) else number}"
        label = _annotation_label(annotation, where)
        if isinstance(label, Rejection):
            rejected.append(label)
            continue
        rows.append(_label_row(data, label, _reviewer(annotation.get("completed_by")), _labelled_at(annotation), where))


def _annotation_label(annotation: Any, origin: str) -> str | Rejection:
    """The annotation's one choice, or why it offers none."""
    if not isinstance(annotation, dict):
        return Rejection(origin=origin, reason="not a Label Studio annotation (a JSON object)")
    if annotation.get("was_cancelled") or annotation.get("skipped"):
        return Rejection(origin=origin, reason="skipped in Label Studio (was_cancelled): not a label")
    results = annotation.get("result")
    chosen = [
        choice
        for result in (results if isinstance(results, list) else [])
        if isinstance(result, dict) and isinstance(result.get("value"), dict)
        for choice in result["value"].get("choices") or []
    ]
    if not chosen:
        return Rejection(origin=origin, reason="no result[].value.choices: submitted without a choice")
    if len(chosen) > 1 or not isinstance(chosen[0], str):
        return Rejection(origin=origin, reason=f"{len(chosen)} choices {chosen}: a label is exactly one class")
    return chosen[0]


def _read_minimal_record(record: dict[str, Any], index: int, rows: list[LabelRow], rejected: list[Rejection]) -> None:
    """One record of the JSON_MIN export: the task's data fields and one annotation's choice, side by side."""
    origin = _task_origin(record, index)
    if record.get("annotation_id") is not None:
        origin = f"{origin} annotation {record['annotation_id']}"
    if not (record.get("sha256") or record.get("path")):
        rejected.append(Rejection(origin=origin, reason="no sha256 or path: not a task visionflow wrote"))
        return
    label = record.get(CHOICES_NAME)
    if label is None:
        rejected.append(Rejection(origin=origin, reason=f"no `{CHOICES_NAME}`: nobody labelled it yet"))
        return
    if not isinstance(label, str):
        rejected.append(Rejection(origin=origin, reason=f"`{CHOICES_NAME}` is {label!r}: a label is exactly one class"))
        return
    rows.append(_label_row(record, label, _reviewer(record.get("annotator")), _labelled_at(record), origin))


def _label_row(data: dict[str, Any], class_name: str, reviewer: str, labelled_at: str | None, origin: str) -> LabelRow:
    return LabelRow(
        sha256=_text(data.get("sha256")),
        path=_text(data.get("path")),
        class_name=class_name,
        source=SOURCE,
        reviewer=reviewer,
        review_id=_text(data.get("review_id")) or "",
        labelled_at=labelled_at,
        origin=origin,
    )


def _reviewer(completed_by: Any) -> str:
    """Who labelled: the e-mail where the export names the user (the UI's export does), else their user id."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or f"label-studio user {completed_by.get('id', '?')}")
    if isinstance(completed_by, int):
        return f"label-studio user {completed_by}"
    return str(completed_by or "")


def _labelled_at(annotation: dict[str, Any]) -> str | None:
    """When the label was last given: an edited annotation's update time, else its creation time."""
    return _text(annotation.get("updated_at")) or _text(annotation.get("created_at"))


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None

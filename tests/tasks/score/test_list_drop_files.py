"""Listing a drop: every file once, hashed or rejected with a reason; unusable drops refused."""

from __future__ import annotations

import hashlib
import os

import pytest

from visionflow.errors import BadInputError
from visionflow.tasks.score.list_drop_files import DropScanConfig, list_drop_files, list_drop_files_task

from tests.conftest import write_image
from tests.scoring_helpers import build_hostile_drop

ONE_PROCESS = DropScanConfig(workers=1)


def test_every_file_of_a_hostile_drop_is_listed_once(tmp_path):
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    files = list_drop_files_task.fn(drop, DropScanConfig(workers=2, files_per_chunk=4))
    assert sorted(files["path"]) == sorted(expected), "the _READY marker is not an input; all else is listed"
    photo = files.set_index("path").loc["photo.jpg"]
    assert photo["sha256"] == hashlib.sha256((drop / "photo.jpg").read_bytes()).hexdigest()
    assert photo["bytes"] == (drop / "photo.jpg").stat().st_size and photo["status"] == "ok"
    refused = files[files["status"] == "rejected"].set_index("path")["reason"].to_dict()
    assert refused == {
        ".cache/": "hidden folder, not entered",
        ".hidden.jpg": "hidden file",
        "link-out.png": "symlink leading outside the drop",
    }


def test_the_ready_marker_and_failure_note_are_not_inputs(tmp_path):
    (tmp_path / "drop").mkdir()
    for name in ("_READY", "_FAILED.txt", "image.png"):
        (tmp_path / "drop" / name).write_bytes(b"x")
    (tmp_path / "drop" / "sub").mkdir()
    (tmp_path / "drop" / "sub" / "_READY").write_bytes(b"x")
    files = list_drop_files(tmp_path / "drop", ONE_PROCESS)
    assert sorted(files["path"]) == ["image.png", "sub/_READY"], "only the drop's own top-level signals are skipped"


def test_oversized_files_are_rejected_unread(tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "big.jpg").write_bytes(b"x" * 2000)
    files = list_drop_files(tmp_path / "drop", DropScanConfig(workers=1, max_file_bytes=1000))
    assert files.loc[0, "status"] == "rejected" and "over the 1,000-byte limit" in files.loc[0, "reason"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.write_text("x"), "is a file, not a folder"),
        (lambda root: root.mkdir(), "is empty"),
        (lambda root: (root.mkdir(), (root / "_READY").write_text("")), "is empty"),
    ],
)
def test_unusable_drops_are_refused_with_a_reason(tmp_path, make, message):
    root = tmp_path / "drop"
    make(root)
    with pytest.raises(BadInputError, match=message):
        list_drop_files(root, ONE_PROCESS)


def test_a_link_that_cannot_be_followed_is_one_rejection_not_a_refused_drop(tmp_path, monkeypatch):
    drop = tmp_path / "drop"
    for index in range(3):
        write_image(drop / f"{index}.png", (40, 40 * index, 200), seed=index)
    os.symlink(tmp_path / "elsewhere" / "secret.png", drop / "locked.png")
    real = os.path.realpath

    def denied(path, *arguments, **keywords):
        # Root may read every link, so a link another user could not follow is simulated here.
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied")
        return real(path, *arguments, **keywords)

    monkeypatch.setattr(os.path, "realpath", denied)
    files = list_drop_files(drop, DropScanConfig(workers=1)).set_index("path")
    assert (files["status"] == "ok").sum() == 3
    assert files.at["locked.png", "reason"] == "unreadable symlink: Permission denied"

"""Stage 1: discovering and hashing files, and quarantining what must not be read."""

from __future__ import annotations

import hashlib
import os

import pytest

from visionflow.errors import BadInputError
from visionflow.tasks.ingest.scan_files import (
    STATUS_OK,
    STATUS_QUARANTINED,
    ScanConfig,
    content_fingerprint,
    detect_layout,
    scan_dataset,
    scan_files_task,
)

from tests.conftest import write_image

ONE_WORKER = ScanConfig(workers=1)


def reasons(manifest) -> dict[str, str]:
    quarantined = manifest[manifest["status"] == STATUS_QUARANTINED]
    return dict(zip(quarantined["path"], quarantined["reason"], strict=True))


def test_split_layout_is_listed_with_classes_splits_and_digests(make_image_folder):
    root = make_image_folder(layout="split", per_class=4, test_per_class=2)
    manifest = scan_dataset(root, ONE_WORKER)
    assert detect_layout(root) == "split"
    assert len(manifest) == 3 * (4 + 2)
    assert set(manifest["status"]) == {STATUS_OK}
    assert set(manifest["source_split"]) == {"train", "test"}
    assert set(manifest["class_name"]) == {"red", "green", "blue"}
    row = manifest.iloc[0]
    assert row["sha256"] == hashlib.sha256((root / row["path"]).read_bytes()).hexdigest()
    assert row["bytes"] == (root / row["path"]).stat().st_size


def test_flat_layout_has_no_source_split(make_image_folder):
    root = make_image_folder(layout="flat", per_class=3)
    manifest = scan_dataset(root, ONE_WORKER)
    assert detect_layout(root) == "flat"
    assert manifest["source_split"].isna().all()
    assert sorted(manifest["class_name"].unique()) == ["blue", "green", "red"]


def test_files_that_must_not_be_read_are_quarantined_with_reasons(make_image_folder, tmp_path):
    root = make_image_folder(layout="split", per_class=3, test_per_class=1)
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "train" / "red" / "000.png").read_bytes())
    (root / "train" / "red" / ".hidden.png").write_bytes(b"x")
    (root / "train" / ".cache").mkdir()
    (root / "train" / ".cache" / "thumb.png").write_bytes(b"x")
    os.symlink(outside, root / "train" / "red" / "link-out.png")
    os.symlink(root / "train" / "red" / "000.png", root / "train" / "red" / "link-in.png")
    os.symlink(tmp_path, root / "train" / "looped")
    (root / "README.txt").write_text("not data")
    (root / "extras").mkdir()
    (root / "extras" / "notes.png").write_bytes(b"x")

    manifest = scan_dataset(root, ONE_WORKER)
    found = reasons(manifest)
    assert found["train/red/.hidden.png"] == "hidden file"
    assert found["train/.cache/"] == "hidden folder, not entered"
    assert "train/.cache/thumb.png" not in set(manifest["path"])
    assert found["train/red/link-out.png"] == "symlink leading outside the data root"
    assert found["train/looped"] == "symlinked folder, not followed"
    assert found["README.txt"] == "outside the train/val/test folders"
    assert found["extras/notes.png"] == "outside the train/val/test folders"
    assert "train/red/link-in.png" not in found, "a symlink that stays inside the root is an ordinary file"
    assert manifest.loc[manifest["status"] == STATUS_QUARANTINED, "sha256"].isna().all()


def test_a_file_outside_any_class_folder_is_quarantined_in_a_flat_layout(make_image_folder):
    root = make_image_folder(layout="flat", per_class=2)
    (root / "stray.png").write_bytes((root / "red" / "000.png").read_bytes())
    assert reasons(scan_dataset(root, ONE_WORKER))["stray.png"] == "not inside a class folder"


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_unusable_roots_raise_an_actionable_error(tmp_path, kind):
    root = tmp_path / "data"
    if kind == "file":
        root.write_text("x")
    elif kind == "empty":
        (root / "cats").mkdir(parents=True)
    with pytest.raises(BadInputError) as error:
        scan_dataset(root, ONE_WORKER)
    assert str(root) in str(error.value)


def test_fingerprint_follows_content_and_names_not_timestamps(make_image_folder):
    root = make_image_folder(layout="flat", per_class=2)
    before = content_fingerprint(scan_dataset(root, ONE_WORKER))
    os.utime(root / "red" / "000.png", (1, 1))
    assert content_fingerprint(scan_dataset(root, ONE_WORKER)) == before
    (root / "red" / "000.png").rename(root / "red" / "renamed.png")
    renamed = content_fingerprint(scan_dataset(root, ONE_WORKER))
    assert renamed != before
    with open(root / "red" / "001.png", "ab") as handle:
        handle.write(b"\0")
    assert content_fingerprint(scan_dataset(root, ONE_WORKER)) != renamed


def test_task_runs_through_fn_with_two_worker_processes(make_image_folder):
    root = make_image_folder(layout="flat", per_class=3)
    manifest = scan_files_task.fn(root, ScanConfig(workers=2, files_per_chunk=2))
    assert manifest["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert len(manifest) == 9


@pytest.mark.parametrize(
    ("folders", "expected_splits"),
    [
        (["train"], {"train"}),
        (["Train", "Validation"], {"train", "val"}),
        (["train", "valid", "TEST"], {"train", "val", "test"}),
    ],
)
def test_split_folders_are_recognised_by_any_common_name(tmp_path, folders, expected_splits):
    root = tmp_path / "data"
    for split_folder in folders:
        for class_name in ("cat", "dog"):
            write_image(root / split_folder / class_name / "0.png", (10, 20, 30), seed=len(split_folder))
    manifest = scan_dataset(root, ONE_WORKER)
    assert detect_layout(root) == "split"
    assert set(manifest["source_split"]) == expected_splits
    assert set(manifest["class_name"]) == {"cat", "dog"}


def test_names_that_are_not_utf8_are_quarantined_not_fatal(make_image_folder):
    root = make_image_folder(layout="flat", per_class=2)
    os.rename(root / "red" / "000.png", os.fsencode(root / "red") + b"/caf\xe9.png")
    found = reasons(scan_dataset(root, ONE_WORKER))
    assert found == {"red/caf\\udce9.png": "file name is not valid UTF-8; rename it"}


def test_an_unreadable_folder_is_reported_and_the_rest_scanned(make_image_folder, monkeypatch):
    root = make_image_folder(layout="flat", per_class=2)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("/green"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    manifest = scan_dataset(root, ONE_WORKER)
    assert reasons(manifest) == {"green": "unreadable folder: Permission denied"}
    assert (manifest["status"] == STATUS_OK).sum() == 4


def test_files_over_the_size_limit_are_quarantined_unread(make_image_folder):
    root = make_image_folder(layout="flat", per_class=2)
    (root / "red" / "video.png").write_bytes(b"\0" * 5000)
    found = reasons(scan_dataset(root, ScanConfig(workers=1, max_file_bytes=4000)))
    assert found == {"red/video.png": "file of 5,000 bytes is over the 4,000-byte limit for one image"}

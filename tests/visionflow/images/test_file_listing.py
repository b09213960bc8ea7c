"""Tests of visionflow/images/file_listing.py: every file gets a row, however deep it lies."""

from __future__ import annotations

import os

from visionflow.images.file_listing import PATH_MAX_BYTES, TOO_LONG_REASON, walk_files

FOLDER_NAME_BYTES = 200  # Each nested folder's name, in bytes; 21 of them pass 4,096.


def make_deep_tree(root, depth: int) -> str:
    """Nest depth folders under root, one file in the deepest; return that file's path relative to root.

    The folders are made through descriptors, since the deep ones cannot be reached by name.
    """
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    names = []
    for level in range(depth):
        name = f"{level:03d}" + "d" * (FOLDER_NAME_BYTES - 3)
        os.mkdir(name, dir_fd=descriptor)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor, names = child, [*names, name]
    file_descriptor = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor)
    os.write(file_descriptor, b"not really a png")
    os.close(file_descriptor)
    os.close(descriptor)
    return "/".join([*names, "deep.png"])


def test_a_file_past_path_max_gets_a_row_of_its_own(tmp_path):
    (tmp_path / "shallow.png").write_bytes(b"x")
    depth = PATH_MAX_BYTES // FOLDER_NAME_BYTES + 1
    deep_file = make_deep_tree(tmp_path, depth)
    assert len(os.fsencode(str(tmp_path / deep_file))) > PATH_MAX_BYTES

    found = {entry.path: entry for entry in walk_files(str(tmp_path))}

    assert set(found) == {"shallow.png", deep_file}
    assert found["shallow.png"].problem is None
    assert found[deep_file].problem == TOO_LONG_REASON
    assert found[deep_file].entry is None


def test_a_shallow_tree_is_walked_by_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.png").write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")

    found = {entry.path: entry.problem for entry in walk_files(str(tmp_path))}

    assert found == {".hidden.png": "hidden file", "a/one.png": None}

"""A listed file swapped before it is read cannot stall a run, flood memory or lead out of its folder."""

from __future__ import annotations

import hashlib
import os

import pytest

from visionflow.images.safe_read import UnsafeFile, read_listed_file, sha256_of_listed_file


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def test_a_regular_file_is_read_and_hashed(root):
    (root / "a.png").write_bytes(b"pixels")
    assert read_listed_file(str(root / "a.png"), str(root), 6) == b"pixels"
    assert sha256_of_listed_file(str(root / "a.png"), str(root), 100) == hashlib.sha256(b"pixels").hexdigest()


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(root):
    os.mkfifo(root / "a.png")
    with pytest.raises(UnsafeFile, match="not a regular file any more"):
        sha256_of_listed_file(str(root / "a.png"), str(root), 100)
    with pytest.raises(UnsafeFile, match="not a regular file any more"):
        read_listed_file(str(root / "a.png"), str(root), 100)


@pytest.mark.timeout(20)
def test_a_link_to_a_device_or_out_of_the_folder_is_refused_unread(root, tmp_path):
    os.symlink("/dev/zero", root / "zero.png")
    with pytest.raises(UnsafeFile, match="link leading outside the folder"):
        sha256_of_listed_file(str(root / "zero.png"), str(root), 100)
    (tmp_path / "secret.txt").write_text("not yours")
    os.symlink(tmp_path / "secret.txt", root / "secret.png")
    with pytest.raises(UnsafeFile, match="link leading outside the folder"):
        read_listed_file(str(root / "secret.png"), str(root), 100)


def test_a_link_inside_the_folder_is_followed(root):
    (root / "real.png").write_bytes(b"pixels")
    os.symlink(root / "real.png", root / "alias.png")
    assert read_listed_file(str(root / "alias.png"), str(root), 6) == b"pixels"


def test_a_file_that_grew_past_the_limit_is_refused_without_reading_it_all(root):
    (root / "big.png").write_bytes(b"x" * 10_000)
    with pytest.raises(UnsafeFile, match="over the 1,000-byte limit"):
        sha256_of_listed_file(str(root / "big.png"), str(root), 1000)
    with pytest.raises(UnsafeFile, match="grew past 1,000 bytes"):
        read_listed_file(str(root / "big.png"), str(root), 1000)

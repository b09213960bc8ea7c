"""Atomic writes: the target is the old file or the new one, never half of either, and no temporary stays."""

from __future__ import annotations

import json

import pytest

from visionflow.atomic import atomic_path, write_json_atomically, write_text_atomically


def test_a_write_replaces_the_file_whole_and_creates_missing_folders(tmp_path):
    target = tmp_path / "deep" / "report.json"
    write_json_atomically(target, {"accuracy": 0.5, "path": tmp_path})
    assert json.loads(target.read_text()) == {"accuracy": 0.5, "path": str(tmp_path)}
    write_text_atomically(target, "second")
    assert target.read_text() == "second"
    assert [path.name for path in target.parent.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "champion.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, durable=True) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["champion.json"]


def test_the_temporary_file_is_hidden_beside_the_target_until_the_rename(tmp_path):
    target = tmp_path / "part.parquet"
    with atomic_path(target, durable=True) as temporary:
        temporary.write_bytes(b"bytes")
        assert temporary.parent == tmp_path and temporary.name.startswith(".part.parquet.tmp-")
        assert not target.exists()
    assert target.read_bytes() == b"bytes" and not temporary.exists()

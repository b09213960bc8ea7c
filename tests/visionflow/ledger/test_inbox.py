"""The drop inbox: readiness, exactly one claim per drop, done and failed folders."""

from __future__ import annotations

import os
import time

from visionflow.ledger.inbox import (
    FAILURE_NOTE,
    DropFolders,
    InboxConfig,
    claim,
    finish,
    is_ready,
    ready_drops,
    release,
    return_stale_claims,
)
from visionflow.tasks.score.claim_drops import claim_drop_task, find_ready_drops_task, finish_drop_task


def make_drop(folders: DropFolders, name: str, age_seconds: float = 0.0, marker: bool = False):
    drop = folders.inbox / name
    (drop / "nested").mkdir(parents=True)
    (drop / "nested" / "image.png").write_bytes(b"pixels")
    if marker:
        (drop / "_READY").write_text("")
    past = time.time() - age_seconds
    for path in (drop / "nested" / "image.png", drop / "nested", drop):
        os.utime(path, (past, past))
    return drop


def test_a_drop_is_ready_with_its_marker_or_after_the_settle_time(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    config = InboxConfig(settle_seconds=30)
    assert not is_ready(make_drop(folders, "fresh"), config)
    assert is_ready(make_drop(folders, "quiet", age_seconds=60), config)
    assert is_ready(make_drop(folders, "marked", marker=True), config)
    make_drop(folders, ".copying", age_seconds=60)
    assert [drop.name for drop in ready_drops(folders, config)] == ["quiet", "marked"]


def test_a_change_inside_a_quiet_drop_restarts_its_settle_time(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    drop = make_drop(folders, "growing", age_seconds=60)
    (drop / "nested" / "late.png").write_bytes(b"more")
    assert not is_ready(drop, InboxConfig(settle_seconds=30))


def test_only_one_claim_of_a_drop_succeeds(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    drop = make_drop(folders, "once", marker=True)
    first = claim_drop_task.fn(drop, folders)
    assert first == folders.processing / "once" and (first / "nested" / "image.png").is_file()
    assert claim(drop, folders) is None and claim_drop_task.fn(drop, folders) is None


def test_finished_drops_move_to_done_or_failed_with_the_reason(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    good = claim(make_drop(folders, "good", marker=True), folders)
    assert finish_drop_task.fn(good, folders) == str(folders.done / "good")
    again = claim(make_drop(folders, "good", marker=True), folders)
    assert finish(again, folders).name.startswith("good-"), "a second drop of the same name keeps both"
    bad = claim(make_drop(folders, "bad", marker=True), folders)
    failed = finish(bad, folders, failure="no champion model yet")
    assert failed == folders.failed / "bad" and (failed / FAILURE_NOTE).read_text() == "no champion model yet\n"


def test_a_stale_claim_goes_back_to_the_inbox_and_is_found_again(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    claimed = claim(make_drop(folders, "abandoned", marker=True), folders)
    assert return_stale_claims(folders, InboxConfig(stale_claim_seconds=3600)) == []
    past = time.time() - 7200
    os.utime(claimed, (past, past))
    found = find_ready_drops_task.fn(folders, InboxConfig(stale_claim_seconds=3600))
    assert found == [folders.inbox / "abandoned"] and not claimed.exists()


def test_a_drop_whose_name_is_still_being_scored_waits_in_the_inbox(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    first = claim(make_drop(folders, "daily", marker=True), folders)
    second = make_drop(folders, "daily", marker=True)
    assert claim(second, folders) is None and second.is_dir()
    assert first.is_dir(), "the drop being scored is left alone"


def test_a_released_drop_is_back_in_the_inbox_for_the_next_run(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    claimed = claim(make_drop(folders, "busy", marker=True), folders)
    assert release(claimed, folders) == folders.inbox / "busy"
    assert ready_drops(folders, InboxConfig()) == [folders.inbox / "busy"]

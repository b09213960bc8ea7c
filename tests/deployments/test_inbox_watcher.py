"""The inbox watcher announces each ready drop once, again only if it stays unclaimed, and asks
for a score-drops run once per look, only when none is already waiting to start."""

from __future__ import annotations

import time

from visionflow.deployments.inbox_watcher import REANNOUNCE_SECONDS, InboxWatcher
from visionflow.events import DROP_READY as DROP_READY_EVENT
from visionflow.ledger.inbox import INBOX_READY_EVENT, DropFolders, InboxConfig


def ready_drop(folders: DropFolders, name: str) -> None:
    (folders.inbox / name).mkdir()
    (folders.inbox / name / "_READY").write_text("")


def watcher_with(tmp_path, run_waiting: list[bool]):
    folders = DropFolders(tmp_path / "drops")
    folders.create()
    events = []
    watcher = InboxWatcher(
        folders,
        InboxConfig(settle_seconds=3600),
        emit=lambda **event: events.append(event),
        run_waiting=lambda: run_waiting[0],
    )
    return folders, watcher, events


def test_ready_drops_are_announced_once_and_again_when_left_unclaimed(tmp_path):
    folders, watcher, events = watcher_with(tmp_path, [False])
    (folders.inbox / "waiting").mkdir()
    ready_drop(folders, "ready")
    now = time.time()
    assert watcher.poll_once(now) == ["ready"]
    assert [event["event"] for event in events] == [DROP_READY_EVENT, INBOX_READY_EVENT]
    assert events[0]["resource"]["prefect.resource.id"] == "visionflow.drop.ready"
    assert events[1]["payload"]["drops"] == ["ready"] and events[1]["payload"]["count"] == 1
    assert watcher.poll_once(now + 1) == [], "announced once"
    assert len(events) == 2, "nothing new: no run asked for"
    assert watcher.poll_once(now + REANNOUNCE_SECONDS + 1) == ["ready"], "still unclaimed: announced again"
    assert events[-1]["event"] == INBOX_READY_EVENT


def test_a_burst_of_drops_asks_for_one_run(tmp_path):
    folders, watcher, events = watcher_with(tmp_path, [False])
    for index in range(50):
        ready_drop(folders, f"drop-{index:02d}")
    assert len(watcher.poll_once()) == 50
    inbox_events = [event for event in events if event["event"] == INBOX_READY_EVENT]
    assert len(inbox_events) == 1 and inbox_events[0]["payload"]["count"] == 50
    assert sum(event["event"] == DROP_READY_EVENT for event in events) == 50


def test_no_run_is_asked_for_while_one_is_waiting_to_start(tmp_path):
    run_waiting = [True]
    folders, watcher, events = watcher_with(tmp_path, run_waiting)
    ready_drop(folders, "first")
    now = time.time()
    assert watcher.poll_once(now) == ["first"]
    assert [event["event"] for event in events] == [DROP_READY_EVENT], "the waiting run will find it"

    run_waiting[0] = False  # The run started (and listed the inbox); a later drop needs a new one.
    ready_drop(folders, "second")
    assert watcher.poll_once(now + 1) == ["second"]
    assert events[-1]["event"] == INBOX_READY_EVENT and events[-1]["payload"]["drops"] == ["second"]

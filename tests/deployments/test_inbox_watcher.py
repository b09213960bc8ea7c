"""The inbox watcher announces each ready drop once, and again only if it stays unclaimed."""

from __future__ import annotations

import time

from visionflow.deployments.inbox import DROP_READY_EVENT, DropFolders
from visionflow.deployments.inbox_watcher import REANNOUNCE_SECONDS, InboxWatcher
from visionflow.deployments.settings import InboxConfig


def test_ready_drops_are_announced_once_and_again_when_left_unclaimed(tmp_path):
    folders = DropFolders(tmp_path / "drops")
    folders.create()
    events = []
    watcher = InboxWatcher(folders, InboxConfig(settle_seconds=3600), emit=lambda **event: events.append(event))
    (folders.inbox / "waiting").mkdir()
    (folders.inbox / "ready").mkdir()
    (folders.inbox / "ready" / "_READY").write_text("")
    now = time.time()
    assert watcher.poll_once(now) == ["ready"]
    assert events[0]["event"] == DROP_READY_EVENT
    assert events[0]["resource"]["prefect.resource.id"] == "visionflow.drop.ready"
    assert watcher.poll_once(now + 1) == [], "announced once"
    assert watcher.poll_once(now + REANNOUNCE_SECONDS + 1) == ["ready"], "still unclaimed: announced again"

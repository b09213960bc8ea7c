"""The inbox watcher: announces each ready drop to Prefect as a `visionflow.drop.ready` event.

It runs as a thread of `visionflow serve`. The `score-drops` deployment's trigger turns each
event into a flow run within seconds, so a drop is scored soon after it becomes ready instead of
at the next scheduled run. The watcher only announces; claiming and scoring stay with the flow,
so a lost or repeated event never scores a drop twice.
"""

from __future__ import annotations

import logging
import threading
import time

from visionflow.deployments.inbox import DROP_READY_EVENT, DROP_RESOURCE_PREFIX, DropFolders, ready_drops
from visionflow.deployments.settings import InboxConfig

logger = logging.getLogger(__name__)

# A drop still in the inbox this long (seconds) after its announcement is announced again, in
# case the run its event started could not claim it.
REANNOUNCE_SECONDS = 60.0


class InboxWatcher(threading.Thread):
    """Polls the inbox every poll_seconds and emits one event per newly ready drop."""

    def __init__(self, folders: DropFolders, config: InboxConfig, poll_seconds: float = 2.0, emit=None) -> None:
        """emit sends one event (prefect.events.emit_event's signature); None means Prefect's own."""
        super().__init__(name="visionflow-inbox-watcher", daemon=True)
        self.folders, self.config, self.poll_seconds = folders, config, poll_seconds
        self._emit = emit
        self._stop_event = threading.Event()
        self._announced: dict[str, float] = {}  # Drop name: when it was last announced.

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        self.folders.create()
        while not self._stop_event.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # The watcher must outlive a bad poll (a folder vanishing mid-scan).
                logger.exception("inbox watcher: poll of %s failed; trying again", self.folders.inbox)

    def poll_once(self, now: float | None = None) -> list[str]:
        """Announce the ready drops not announced recently; return their names."""
        if self._emit is None:
            from prefect.events import emit_event  # Imported here: Prefect must be set up first.

            self._emit = emit_event
        now = time.time() if now is None else now
        ready = {drop.name: drop for drop in ready_drops(self.folders, self.config, now)}
        self._announced = {name: when for name, when in self._announced.items() if name in ready}
        announced = []
        for name, drop in ready.items():
            if now - self._announced.get(name, -REANNOUNCE_SECONDS) < REANNOUNCE_SECONDS:
                continue
            self._emit(
                event=DROP_READY_EVENT,
                resource={"prefect.resource.id": f"{DROP_RESOURCE_PREFIX}{name}", "prefect.resource.name": name},
                payload={"path": str(drop)},
            )
            self._announced[name] = now
            announced.append(name)
            logger.info("drop %s is ready; announced it to Prefect", name)
        return announced

"""The inbox watcher: tells Prefect when drops are ready, so they are scored within seconds.

It runs as a thread of `visionflow serve`. Each newly ready drop is announced as a
`visionflow.drop.ready` event (for automations that follow single drops). Once per look, when
any drop was announced and no `score-drops` run is already waiting to start, it also emits one
`visionflow.inbox.ready` event, on which the `score-drops` deployment's trigger starts a run;
that run scores every ready drop, including those that arrive while it works. The watcher only
announces: claiming and scoring stay with the flow, so a lost or repeated event never scores a
drop twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from visionflow.events import DROP_READY, DROP_RESOURCE_PREFIX
from visionflow.ledger.inbox import INBOX_READY_EVENT, INBOX_RESOURCE_ID, DropFolders, InboxConfig, ready_drops

logger = logging.getLogger(__name__)

# A drop still in the inbox this long (seconds) after its announcement is announced again, in
# case the run its event started could not claim it.
REANNOUNCE_SECONDS = 60.0
SCORE_DROPS_DEPLOYMENT = "score-drops"  # The deployment the inbox event starts.


class InboxWatcher(threading.Thread):
    """Polls the inbox every poll_seconds and announces newly ready drops."""

    def __init__(
        self,
        folders: DropFolders,
        config: InboxConfig,
        poll_seconds: float = 2.0,
        emit=None,
        run_waiting: Callable[[], bool] | None = None,
    ) -> None:
        """emit sends one event (prefect.events.emit_event's signature); None means Prefect's own.
        run_waiting says whether a score-drops run is waiting to start; None asks the Prefect API."""
        super().__init__(name="visionflow-inbox-watcher", daemon=True)
        self.folders, self.config, self.poll_seconds = folders, config, poll_seconds
        self._emit = emit
        self._run_waiting = run_waiting or score_drops_run_waiting
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
                event=DROP_READY,
                resource={"prefect.resource.id": f"{DROP_RESOURCE_PREFIX}{name}", "prefect.resource.name": name},
                payload={"path": str(drop)},
            )
            self._announced[name] = now
            announced.append(name)
        if announced:
            self._start_a_run(announced)
        return announced

    def _start_a_run(self, announced: list[str]) -> None:
        """Emit the inbox event, unless a waiting run will find these drops anyway."""
        if self._run_waiting():
            logger.info("%d drops ready; a score-drops run is already waiting to start", len(announced))
            return
        self._emit(
            event=INBOX_READY_EVENT,
            resource={"prefect.resource.id": INBOX_RESOURCE_ID, "prefect.resource.name": "inbox"},
            payload={"drops": announced[:100], "count": len(announced), "inbox": str(self.folders.inbox)},
        )
        logger.info("%d drops ready (%s); asked Prefect for a score-drops run", len(announced), announced[0])


def score_drops_run_waiting() -> bool:
    """True when a score-drops run is due and has not started yet (scheduled for now, or pending).

    Such a run lists the inbox when it starts, so drops ready now are scored by it. When the
    API cannot be asked, this answers False: one run too many is harmless, a drop left waiting
    is not.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    due = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])),
        expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC)),
    )
    deployment = DeploymentFilter(name=DeploymentFilterName(any_=[SCORE_DROPS_DEPLOYMENT]))
    try:
        with get_client(sync_client=True) as client:
            return bool(client.read_flow_runs(flow_run_filter=due, deployment_filter=deployment, limit=1))
    except Exception:  # A busy or restarting server: ask for a run rather than risk none.
        logger.warning("inbox watcher: could not ask Prefect for waiting score-drops runs", exc_info=True)
        return False

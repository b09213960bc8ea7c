"""visionflow's events reach a real Prefect server with their payloads: a scored drop that drifted,
a promoted model, a rejected one."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from visionflow.errors import GateRefusedError
from visionflow.events import DROP_DRIFTED, DROP_SCORED, MODEL_PROMOTED, MODEL_REJECTED, emit
from visionflow.flows.models import promote_flow
from visionflow.flows.score import ScoringConfig, score_flow

from tests.conftest import write_image
from tests.registry_helpers import three_model_registry

ONE_PROCESS = ScoringConfig.model_validate({"scan": {"workers": 1}, "score": {"workers": 1}})


def read_visionflow_events(expected: set[str], since: datetime, timeout: float = 60) -> dict[str, list]:
    """The visionflow events on the server since a moment (the test server is shared), by name,
    once every expected name has arrived."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            names, occurred = EventNameFilter(prefix=["visionflow."]), EventOccurredFilter(since=since)
            wanted = EventFilter(event=names, occurred=occurred)
            page = client.read_events(filter=wanted, limit=50)
        events: dict[str, list] = {}
        for event in page.events:
            events.setdefault(event.event, []).append(event)
        if expected <= set(events) or time.monotonic() > deadline:
            return events
        time.sleep(1)


@pytest.mark.usefixtures("prefect_server")
def test_drops_and_models_announce_what_happened(home):
    started = datetime.now(UTC)
    dataset_dir = home / "datasets" / "shapes"
    three_model_registry(home / "models", dataset_dir)
    drop = home / "incoming" / "reds"
    for index in range(40):  # 30 or more images get a drift verdict; saturated red is far from the profile.
        write_image(drop / f"{index}.png", (250, 5, 5), seed=index)
    summary = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home))
    assert summary.drifted
    promote_flow(version="v0002", home=str(home))
    with pytest.raises(GateRefusedError):
        promote_flow(version="v0003", home=str(home))

    events = read_visionflow_events({DROP_SCORED, DROP_DRIFTED, MODEL_PROMOTED, MODEL_REJECTED}, started)
    scored = events[DROP_SCORED][0]
    assert scored.resource.id == "visionflow.drop.reds" and scored.payload["counts"]["scored"] == 40
    assert scored.payload["model_version"] == "v0001" and scored.payload["report"].endswith(".json")
    assert events[DROP_DRIFTED][0].payload["drift_reasons"] == summary.drift_reasons
    promoted = events[MODEL_PROMOTED][0]
    assert promoted.resource.id == "visionflow.model.v0002" and promoted.payload["from_version"] == "v0001"
    rejected = events[MODEL_REJECTED][0]
    assert rejected.resource.id == "visionflow.model.v0003" and "below the floor" in rejected.payload["reason"]


def test_outside_a_run_nothing_is_sent(monkeypatch):
    import prefect.events

    sent = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **event: sent.append(event))
    emit(DROP_SCORED, "visionflow.drop.", "x", {})
    assert sent == []


@pytest.mark.usefixtures("prefect_server")
def test_labels_stored_by_a_command_are_announced_to_the_server_it_names(tmp_path, monkeypatch):
    import hashlib

    import numpy as np
    from prefect.settings import PREFECT_API_URL

    from visionflow.events import LABELS_ADDED
    from visionflow.home import resolve_home
    from visionflow.images.imaging import ImageSpec
    from visionflow.labels.labels_store import LabelRow, import_labels

    from tests.review_helpers import scored_drop
    from tests.scoring_helpers import CLASSES

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # As a team's shell names its server.
    started = datetime.now(UTC)
    layout = resolve_home(tmp_path / "team-home")
    _, paths = scored_drop(layout, tmp_path / "drop", np.full((2, 3), 1 / 3, np.float32))
    rows = [LabelRow(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), class_name="red", source="csv",
                     origin=f"row {index}") for index, path in enumerate(paths)]  # fmt: skip
    import_labels(layout, rows, CLASSES, ImageSpec(12, 12, 3))
    added = read_visionflow_events({LABELS_ADDED}, started)[LABELS_ADDED][0]
    assert added.resource.id == "visionflow.labels.team-home"
    assert added.payload["added"] == 2 and added.payload["labels"] == 2

"""Moving the champion: the history of every move, rollbacks, compare-and-set, moves at the same time."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from visionflow.errors import BadInputError, BusyError, DamagedStateError
from visionflow.models.champion import (
    HISTORY_FILE,
    read_history,
    rollback_champion,
    set_champion,
)
from visionflow.models.champion_pointer import read_champion
from visionflow.models.registry import ModelMetadata, register


@pytest.fixture
def registry(tmp_path):
    """Three registered versions; the metadata says training promoted v0001 and v0002."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"model bytes")
    root = tmp_path / "models"
    for promoted in (True, True, False):
        register({"model.keras": model}, ModelMetadata.model_validate({"gate": {"promoted": promoted}}), root)
    return root


def test_every_move_is_recorded_with_from_to_reason_and_by(registry):
    set_champion(registry, "v0001", reason="first", by="test")
    set_champion(registry, "v0003", reason="better", action="force", by="visionflow models promote v0003")
    history = read_history(registry)
    assert [(c.action, c.from_version, c.to_version, c.reason) for c in history] == [
        ("promote", None, "v0001", "first"),
        ("force", "v0001", "v0003", "better"),
    ]
    assert history[1].by == "visionflow models promote v0003" and history[1].at.endswith("+00:00")
    assert read_champion(registry).version == "v0003"


def test_rollback_walks_back_through_the_champions_and_stops_at_the_first(registry):
    for version in ("v0001", "v0002", "v0003"):
        set_champion(registry, version, by="test")
    assert rollback_champion(registry, by="test").to_version == "v0002"
    assert rollback_champion(registry, by="test").to_version == "v0001"
    assert read_champion(registry).version == "v0001"
    with pytest.raises(BadInputError, match="no champion before v0001.*visionflow models promote"):
        rollback_champion(registry)
    set_champion(registry, "v0003", by="test")
    assert rollback_champion(registry, by="test").to_version == "v0001", "after a new promotion, back to the last"


def test_a_damaged_champion_pointer_is_reported_not_rolled_back_from(registry):
    set_champion(registry, "v0001", by="test")
    set_champion(registry, "v0002", by="test")
    (registry / "champion.json").write_text("{not json")
    with pytest.raises(DamagedStateError, match="champion pointer .* is damaged"):
        rollback_champion(registry, by="test")
    assert (registry / "champion.json").read_text() == "{not json", "left for a person to mend"


def test_a_damaged_version_does_not_stop_a_rollback_past_it(registry):
    (registry / "v0003" / "metadata.json").write_text("{")
    (registry / "champion.json").write_text(json.dumps({"version": "v0002"}))
    assert rollback_champion(registry, by="test").to_version == "v0001"


def test_a_registry_without_history_rolls_back_to_what_training_promoted(registry):
    (registry / "champion.json").write_text(json.dumps({"version": "v0002"}))
    change = rollback_champion(registry, by="test")
    assert (change.from_version, change.to_version) == ("v0002", "v0001")


def test_a_champion_moved_meanwhile_is_not_overwritten(registry):
    set_champion(registry, "v0001", by="test")
    set_champion(registry, "v0002", by="another run")
    with pytest.raises(BusyError, match="became v0002 while v0003 was compared with v0001"):
        set_champion(registry, "v0003", expected_from="v0001")
    assert read_champion(registry).version == "v0002" and len(read_history(registry)) == 2


def test_moves_at_the_same_time_leave_one_consistent_champion(registry):
    versions = ["v0001", "v0002", "v0003"] * 6
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda version: set_champion(registry, version, by="test"), versions))
    history = read_history(registry)
    assert len(history) == len(versions)
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_version == before.to_version, "each move starts where the one before ended"
    assert read_champion(registry).version == history[-1].to_version


def test_an_unknown_version_is_refused(registry):
    with pytest.raises(BadInputError, match="no registered model 'v0009'"):
        set_champion(registry, "v0009")


def test_a_cut_last_line_is_skipped_and_a_damaged_line_is_named(registry):
    set_champion(registry, "v0001", by="test")
    path = registry / HISTORY_FILE
    path.write_text(path.read_text() + '{"at": "2026-')
    assert len(read_history(registry)) == 1
    set_champion(registry, "v0002", by="test")  # The cut line is dropped before the next append.
    assert [change.to_version for change in read_history(registry)] == ["v0001", "v0002"]
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(DamagedStateError, match=f"line 1 of the champion history {path}"):
        read_history(registry)

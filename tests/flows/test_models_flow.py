"""The promote and rollback flows on a real Prefect server."""

from __future__ import annotations

import pytest

from visionflow.errors import BadInputError, GateRefusedError
from visionflow.flows.models import promote_flow, rollback_flow
from visionflow.models.champion import read_history
from visionflow.models.champion_pointer import read_champion

from tests.registry_helpers import three_model_registry


@pytest.fixture
def registry_home(home):
    dataset_dir = home / "datasets" / "shapes"
    three_model_registry(home / "models", dataset_dir)
    return home


@pytest.mark.usefixtures("prefect_server")
def test_promote_then_rollback_move_the_champion_and_record_the_runs(registry_home):
    moved = promote_flow(version="v0002", home=str(registry_home))
    assert (moved.from_version, moved.to_version, moved.action) == ("v0001", "v0002", "promote")
    assert moved.by.startswith("flow run promote-v0002 (")
    back = rollback_flow(reason="checking", home=str(registry_home))
    assert (back.from_version, back.to_version) == ("v0002", "v0001")
    assert read_champion(registry_home / "models").version == "v0001"
    assert [change.action for change in read_history(registry_home / "models")][-2:] == ["promote", "rollback"]


@pytest.mark.usefixtures("prefect_server")
def test_the_gate_refuses_and_force_needs_a_reason(registry_home):
    with pytest.raises(GateRefusedError, match="v0003 was not promoted"):
        promote_flow(version="v0003", home=str(registry_home))
    with pytest.raises(BadInputError, match="needs a reason"):
        promote_flow(version="v0003", force=True, home=str(registry_home))
    assert promote_flow(version="v0003", force=True, reason="known good", home=str(registry_home)).action == "force"

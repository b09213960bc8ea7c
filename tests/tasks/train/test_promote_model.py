"""Promoting a registered model through the gate, past it with a reason, and rolling back."""

from __future__ import annotations

import json
import logging

import pytest

from visionflow.errors import BadInputError, GateRefusedError, InvalidSettingError
from visionflow.models.champion import read_history
from visionflow.models.champion_pointer import read_champion
from visionflow.tasks.train.evaluate_model import EvaluationConfig
from visionflow.tasks.train.gate_model import GateConfig
from visionflow.tasks.train.promote_model import promote, promote_model_task, rollback_champion_task

from tests.registry_helpers import three_model_registry

LOG = logging.getLogger(__name__)


@pytest.fixture
def registry(tmp_path):
    """v0001 the champion; v0002 a strong candidate; v0003 one below the floors. One test split."""
    dataset_dir = tmp_path / "datasets" / "shapes"
    return three_model_registry(tmp_path / "models", dataset_dir)


def test_a_candidate_that_passes_the_gate_becomes_champion_and_is_recorded(registry):
    move = promote_model_task.fn(registry, "v0002", GateConfig(), EvaluationConfig(), None)
    assert (move.action, move.from_version, move.to_version) == ("promote", "v0001", "v0002")
    assert "not worse than champion v0001" in move.reason, "the champion was measured on the same split"
    assert read_champion(registry).version == "v0002"
    assert read_history(registry)[-1].to_version == "v0002"


def test_promoting_champion_by_name_asks_for_a_version(registry):
    with pytest.raises(InvalidSettingError, match="name the registered version to promote, such as v0002"):
        promote(registry, "champion", GateConfig(), EvaluationConfig(), None, LOG)
    assert read_champion(registry).version == "v0001"


def test_a_candidate_the_gate_refuses_leaves_the_champion(registry):
    with pytest.raises(GateRefusedError, match=r"v0003 was not promoted: test accuracy 0.2000 is below the floor"):
        promote(registry, "v0003", GateConfig(), EvaluationConfig(), None, LOG)
    assert read_champion(registry).version == "v0001"
    assert [change.to_version for change in read_history(registry)] == ["v0001"], "only v0001's own promotion"


def test_force_promotes_past_the_gate_with_the_reason_and_rollback_returns(registry):
    move = promote_model_task.fn(registry, "v0003", GateConfig(), EvaluationConfig(), "hotfix for class blue")
    assert (move.action, move.to_version, move.reason) == ("force", "v0003", "hotfix for class blue")
    back = rollback_champion_task.fn(registry, "v0003 misbehaves")
    assert (back.from_version, back.to_version, back.reason) == ("v0003", "v0001", "v0003 misbehaves")
    assert [change.action for change in read_history(registry)][-2:] == ["force", "rollback"]


def test_promoting_the_champion_changes_nothing(registry):
    move = promote_model_task.fn(registry, "v0001", GateConfig(), EvaluationConfig(), None)
    assert move.action == "none" and "already is the champion" in move.reason
    assert len(read_history(registry)) == 1


def test_bad_inputs_say_what_to_do(registry, tmp_path):
    with pytest.raises(BadInputError, match="no registered model 'v0042'"):
        promote(registry, "v0042", GateConfig(), EvaluationConfig(), None, LOG)
    with pytest.raises(InvalidSettingError, match="is not a model version"):
        promote(registry, "../v0001", GateConfig(), EvaluationConfig(), None, LOG)
    (tmp_path / "datasets" / "shapes" / "test.parquet").unlink()
    with pytest.raises(BadInputError, match="is gone.*--force --reason TEXT"):
        promote(registry, "v0002", GateConfig(), EvaluationConfig(), None, LOG)


def test_a_version_with_incomplete_metrics_is_not_gated_but_can_be_forced(registry):
    # Older or hand-written metadata may keep only some of the test metrics: the gate cannot judge them.
    metadata_path = registry / "v0002" / "metadata.json"
    fields = json.loads(metadata_path.read_text())
    fields["metrics"] = {"accuracy": 0.9, "macro_f1": 0.8}
    metadata_path.write_text(json.dumps(fields))
    with pytest.raises(BadInputError, match="no recorded test metrics.*--force --reason TEXT"):
        promote(registry, "v0002", GateConfig(), EvaluationConfig(), None, LOG)
    assert promote(registry, "v0002", GateConfig(), EvaluationConfig(), "old model, checked by hand", LOG) is not None

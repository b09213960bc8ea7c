"""The deployment definitions point at the real flows, with schedules, a trigger and valid parameters."""

from __future__ import annotations

import inspect
import re

import pytest
from prefect.utilities.callables import parameter_schema

from visionflow.deployments.definitions import all_deployments
from visionflow.deployments.settings import DEPLOYMENT_NAMES, ServeConfig
from visionflow.flows.evaluate import evaluate_flow
from visionflow.flows.ingest import ingest_flow
from visionflow.flows.models import promote_flow, rollback_flow
from visionflow.flows.review import review_flow
from visionflow.flows.score import score_flow
from visionflow.flows.score_drops import score_drops_flow
from visionflow.flows.train import train_flow
from visionflow.ledger.inbox import INBOX_READY_EVENT, INBOX_RESOURCE_ID

FLOWS = {
    "train": train_flow,
    "score-drops": score_drops_flow,
    "score": score_flow,
    "ingest": ingest_flow,
    "evaluate": evaluate_flow,
    "promote": promote_flow,
    "rollback": rollback_flow,
    "review": review_flow,
}


@pytest.fixture
def deployments():
    config = ServeConfig(train_cron="15 4 * * *", score_every_seconds=120, settle_seconds=7, train_data="cifar10")
    return {deployment.name: deployment for deployment in all_deployments(config)}


def test_every_deployment_runs_its_flow_with_parameters_the_flow_accepts(deployments):
    assert set(deployments) == set(FLOWS)
    assert list(deployments) == list(DEPLOYMENT_NAMES), "serve announces the deployments it serves"
    for name, deployment in deployments.items():
        flow = FLOWS[name]
        assert deployment.flow_name == flow.name
        assert set(deployment.parameters) <= set(inspect.signature(flow.fn).parameters)
        assert deployment.enforce_parameter_schema is True, "the server refuses parameters the flow would not accept"
        assert deployment.entrypoint == f"{flow.fn.__module__}.{flow.fn.__name__}"
        assert deployment.entrypoint.startswith("visionflow.flows."), "flows are found by their installed module"


def test_train_and_score_drops_are_scheduled_as_configured(deployments):
    train_schedule = deployments["train"].schedules[0].schedule
    assert train_schedule.cron == "15 4 * * *" and deployments["train"].parameters["data"] == "cifar10"
    score_schedule = deployments["score-drops"].schedules[0].schedule
    assert score_schedule.interval.total_seconds() == 120
    assert deployments["score-drops"].parameters == {"inbox": {"settle_seconds": 7}}
    trigger = deployments["score-drops"].triggers[0]
    assert trigger.expect == {INBOX_READY_EVENT}
    assert trigger.match.model_dump() == {"prefect.resource.id": INBOX_RESOURCE_ID}


def test_a_scoring_engine_given_to_serve_is_the_default_of_both_scoring_deployments():
    chosen = {deployment.name: deployment for deployment in all_deployments(ServeConfig(score_engine="openvino"))}
    assert chosen["score-drops"].parameters["scoring"] == {"score": {"engine": "openvino"}}
    assert chosen["score"].parameters == {"config": {"score": {"engine": "openvino"}}}
    from visionflow.flows.score import ScoringConfig

    assert ScoringConfig.model_validate(chosen["score"].parameters["config"]).score.engine == "openvino"
    plain = {deployment.name: deployment for deployment in all_deployments(ServeConfig())}
    assert plain["score"].parameters == {}, "without one, the flow's own default (auto) applies"


def test_the_ui_forms_show_the_grouped_settings_with_descriptions():
    train_schema = parameter_schema(train_flow)
    assert {"data", "preset", "epochs", "ingest", "evaluation", "gate"} <= set(train_schema.properties)
    assert "classic Keras CIFAR-10 CNN" in train_schema.properties["preset"]["description"]
    drops_schema = parameter_schema(score_drops_flow)
    assert {"model", "inbox", "scoring"} <= set(drops_schema.properties)
    assert "settle_seconds" in str(drops_schema.definitions), "nested settings appear as typed fields"


@pytest.mark.parametrize("cron", ["every monday", "61 3 * * *", "0 3 * *", "H 3 * * *"])
def test_a_cron_prefect_would_refuse_is_an_invalid_setting_naming_it(cron):
    from visionflow.errors import InvalidSettingError

    expected = re.escape(f"train cron '{cron}' is not a cron expression")
    with pytest.raises(InvalidSettingError, match=expected) as refused:
        all_deployments(ServeConfig(train_cron=cron))
    assert refused.value.exit_code == 2

"""The deployment definitions point at the real flows with parameters the flows accept."""

from __future__ import annotations

import inspect

from deployments.definitions import all_deployments
from flows.ingest import ingest_flow


def test_ingest_deployment_runs_the_ingest_flow_with_valid_defaults():
    deployments = {deployment.name: deployment for deployment in all_deployments()}
    ingest = deployments["ingest"]
    assert ingest.flow_name == "ingest"
    accepted = set(inspect.signature(ingest_flow.fn).parameters)
    assert set(ingest.parameters) <= accepted
    assert ingest.enforce_parameter_schema is not False
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(ingest_flow)
    assert {"data", "config", "home"} <= set(schema.properties), "the UI builds its run form from this schema"

"""What data_contracts/gx_validation.py needs of Great Expectations 1.x that GX has no public form for.

Each validation runs in an ephemeral GX context, and its result is then kept in the file data
context under VISIONFLOW_HOME, whose Data Docs site shows it. GX's public road to Data Docs is a
Checkpoint run in the context that keeps them, which would store every suite, a data source and
a checkpoint there as well; storing the one result takes GX's validation-results store, the key
of a suite in it, and the URL of a result's page, none of which GX publishes. They are reached
here alone, each checked against the installed GX by tests/data_contracts/test_gx_compat.py, and
pyproject.toml holds great-expectations to the releases those tests passed with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def validation_result_key(suite_name: str, run_name: str, run_time: datetime, batch_name: str):
    """The key a validation result of suite_name is stored under, for one run and one batch."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    return ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
        run_id=RunIdentifier(run_name=run_name, run_time=run_time),
        batch_identifier=batch_name,
    )


def store_validation_result(context, key, result: Any) -> None:
    """Keep result in context's validation-results store under key, where Data Docs find it."""
    context.validation_results_store.set(key, result)


def stored_validation_result_keys(context) -> list:
    """The keys of every validation result context's store keeps."""
    return context.validation_results_store.list_keys()


def docs_page_url(context, key) -> str:
    """The URL of the Data Docs page of the result stored under key (file://... for a local site)."""
    return context.get_docs_sites_urls(resource_identifier=key)[0]["site_url"]

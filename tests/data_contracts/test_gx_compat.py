"""The Great Expectations internals data_contracts/gx_compat.py reaches are there, as the installed GX has them.

Each test names the internal it checks, so a GX release that moved or changed one fails here, by
name, rather than as a Data Docs page quietly missing (gx_validation logs such a failure and goes on).
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from pathlib import Path

from visionflow.data_contracts import gx_compat


def test_the_suite_key_is_where_it_was_and_takes_a_name():
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    assert list(inspect.signature(ExpectationSuiteIdentifier).parameters) == ["name"]


def test_a_context_has_a_validation_results_store_that_sets_and_lists_keys():
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.data_context.store import ValidationResultsStore

    assert isinstance(inspect.getattr_static(AbstractDataContext, "validation_results_store"), property)
    assert list(inspect.signature(ValidationResultsStore.set).parameters)[:3] == ["self", "key", "value"]
    assert list(inspect.signature(ValidationResultsStore.list_keys).parameters) == ["self"]


def test_a_context_gives_the_url_of_a_result_s_page():
    from great_expectations.data_context import AbstractDataContext

    assert "resource_identifier" in inspect.signature(AbstractDataContext.get_docs_sites_urls).parameters


def test_a_result_stored_in_a_file_context_is_listed_and_gets_its_page(tmp_path):
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult

    context = gx.get_context(mode="file", project_root_dir=str(tmp_path))
    key = gx_compat.validation_result_key("raw_manifest", "ingest-data", datetime.now(UTC), "manifest")
    result = ExpectationSuiteValidationResult(success=True, results=[], suite_name="raw_manifest")
    gx_compat.store_validation_result(context, key, result)
    assert gx_compat.stored_validation_result_keys(context) == [key]
    assert key.run_id.run_name == "ingest-data" and key.expectation_suite_identifier.name == "raw_manifest"

    context.build_data_docs(resource_identifiers=[key])
    url = gx_compat.docs_page_url(context, key)
    assert url.startswith("file://") and "ingest-data" in url
    assert Path(url.removeprefix("file://")).is_file()

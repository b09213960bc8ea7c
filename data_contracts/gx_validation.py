"""The one module of visionflow that talks to Great Expectations.

Each validation loads its suite (data_contracts/contract_suites.py) into a fresh ephemeral GX
context (nothing is written to disk, and no GX object is shared between threads, which GX does
not support) and turns GX's result into a ContractReport. Given a Data Docs root
(VISIONFLOW_HOME), each result is also stored in a GX file data context there and its page
built, so the team can browse every validation in GX's own Data Docs site
(<home>/gx/uncommitted/data_docs/local_site/index.html); the report carries the page's URL.
What GX has no public form for is reached through data_contracts/gx_compat.py.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from visionflow.data_contracts import gx_compat

# The suites and their reports: the pipelines import them from here too (the "as" names only for them).
from visionflow.data_contracts.contract_suites import ContractReport, ExpectationOutcome, load_suite

# Usage statistics stay off in every GX version that reads this variable.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

logger = logging.getLogger(__name__)

# How many example values of the identifying column a report shows per failed expectation.
EXAMPLES_PER_FAILURE = 5

# The Data Docs index page, relative to the file data context's root (VISIONFLOW_HOME).
DATA_DOCS_INDEX = Path("gx/uncommitted/data_docs/local_site/index.html")
# Rebuilding the index lists every stored validation, so its cost grows with the history; it is
# rebuilt at most this often, in seconds, while each validation's own page is built at once.
INDEX_REFRESH_SECONDS = 60.0

# GX builds contexts and datasources with module-level state; one validation at a time keeps
# concurrent Prefect tasks from corrupting each other's results.
_GX_LOCK = threading.Lock()


def _progress_bars_with_a_thread_lock() -> None:
    """Give tqdm, which draws GX's progress bars, a thread lock in place of its multiprocessing one.

    In a spawned worker (start_validation_process) tqdm's default lock is a named semaphore, and a
    worker ended without its teardown when a command finishes leaves it behind: Python's resource
    tracker then warns about a leaked semaphore after the command's output. Validations run one at
    a time per process (_GX_LOCK), so a thread lock is all the bars need.
    """
    try:
        from tqdm import tqdm  # Great Expectations' own dependency.
    except ImportError:
        return
    tqdm.set_lock(threading.RLock())


_progress_bars_with_a_thread_lock()


# A worker process with Great Expectations imported, where this process's validations run
# (start_validation_process); None: they run in this process.
_VALIDATION_PROCESS = None


def start_validation_process() -> None:
    """Import Great Expectations in a worker process from now on, and validate there.

    A command that also imports TensorFlow and Prefect spent about 0.7 s more before its flow
    could start when GX was imported in the same process, even on a thread: an import holds the
    interpreter lock. In a worker process GX imports beside them, on the other core.
    """
    global _VALIDATION_PROCESS
    from visionflow.parallel import start_worker_process

    if _VALIDATION_PROCESS is None:
        _VALIDATION_PROCESS = start_worker_process(("great_expectations", __name__))


def _in_validation_process(function, *arguments):
    """function(*arguments) in the validation process if this process started one, else here.

    A validation process that died (out of memory, killed) is dropped and the work done here.
    """
    global _VALIDATION_PROCESS
    if _VALIDATION_PROCESS is not None:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return _VALIDATION_PROCESS.submit(function, *arguments).result()
        except BrokenProcessPool:
            logger.warning("the validation process ended unexpectedly; validating in this process")
            _VALIDATION_PROCESS = None
    return function(*arguments)


def validate(
    frame: pd.DataFrame,
    suite_name: str,
    parameters: dict[str, Any],
    target: str,
    example_column: str = "path",
    data_docs: Path | None = None,
    run_name: str = "visionflow",
    refresh_index: bool = False,
) -> ContractReport:
    """Validate frame against the named suite, filling its $PARAMETER values from parameters.

    With data_docs (a folder, VISIONFLOW_HOME), the result also goes into the GX Data Docs site
    kept there, under run_name (what was validated: a dataset, a drop); the site's index is
    rebuilt when refresh_index is set or it is over INDEX_REFRESH_SECONDS old.
    """
    arguments = (frame, suite_name, parameters, target, example_column, data_docs, run_name, refresh_index)
    return _in_validation_process(_validate_here, *arguments)


def _validate_here(
    frame: pd.DataFrame,
    suite_name: str,
    parameters: dict[str, Any],
    target: str,
    example_column: str,
    data_docs: Path | None,
    run_name: str,
    refresh_index: bool,
) -> ContractReport:
    document = load_suite(suite_name)
    frame = frame.reset_index(drop=True)
    with _GX_LOCK:
        raw_results, gx_result = _run_gx(frame, document, parameters, example_column)
        docs_url = None
        if data_docs is not None:
            docs_url = _add_to_data_docs(Path(data_docs), document["name"], run_name, target, gx_result, refresh_index)
    outcomes = [
        _outcome(expectation, result, example_column)
        for expectation, result in zip(document["expectations"], raw_results, strict=True)
    ]
    return ContractReport(
        suite=document["name"],
        contract_version=str(document["meta"]["contract_version"]),
        target=target,
        outcomes=outcomes,
        docs_url=docs_url,
    )


def _add_to_data_docs(
    root: Path, suite_name: str, run_name: str, target: str, result, refresh_index: bool
) -> str | None:
    """Store one validation result in the file data context at root and build its page; its URL.

    Data Docs are for reading: a failure here is logged and never changes the contract's verdict.
    """
    import great_expectations as gx

    try:
        context = gx.get_context(mode="file", project_root_dir=str(root))
        key = gx_compat.validation_result_key(suite_name, _page_name(run_name), datetime.now(UTC), _page_name(target))
        result.meta["run_id"] = key.run_id  # The page's title and "Run Name" show it.
        gx_compat.store_validation_result(context, key, result)
        index = root / DATA_DOCS_INDEX
        stale = not index.is_file() or time.time() - index.stat().st_mtime > INDEX_REFRESH_SECONDS
        context.build_data_docs(resource_identifiers=[key], build_index=refresh_index or stale)
        return gx_compat.docs_page_url(context, key)
    except Exception:  # GX raises many types; none of them may fail a run that passed its contract.
        logger.warning("could not add the %s validation to the Data Docs under %s", suite_name, root, exc_info=True)
        return None


def refresh_data_docs_index(root: Path) -> Path | None:
    """Rebuild the Data Docs index under root (after a burst of validations); its path, or None."""
    return _in_validation_process(_refresh_data_docs_index_here, Path(root))


def _refresh_data_docs_index_here(root: Path) -> Path | None:
    import great_expectations as gx

    index = Path(root) / DATA_DOCS_INDEX
    if not index.parent.is_dir():
        return None
    with _GX_LOCK:
        try:
            context = gx.get_context(mode="file", project_root_dir=str(root))
            keys = gx_compat.stored_validation_result_keys(context)
            if keys:
                newest = max(keys, key=lambda key: key.run_id.run_time)
                context.build_data_docs(resource_identifiers=[newest], build_index=True)
        except Exception:  # Reading aid only: never fails the run.
            logger.warning("could not rebuild the Data Docs index under %s", root, exc_info=True)
            return None
    return index


def _page_name(text: str) -> str:
    """text as one safe path component of a Data Docs page."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-") or "validation"


def _run_gx(frame: pd.DataFrame, document: dict, parameters: dict[str, Any], example_column: str) -> tuple[list, Any]:
    """Run the suite with GX in a fresh ephemeral context; the results in the suite's order, and
    GX's whole validation result."""
    import great_expectations as gx  # Imported here: it takes seconds, and only validation needs it.
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars={"globally": False, "metric_calculations": False},
        ),
    )
    datasource = context.data_sources.add_pandas(name="visionflow")
    asset = datasource.add_dataframe_asset(name=document["name"])
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
    # Each expectation is tagged with its position, so results map back to the JSON whatever order
    # GX returns them in.
    expectations = [
        {**expectation, "meta": {**expectation.get("meta", {}), "position": position}}
        for position, expectation in enumerate(document["expectations"])
    ]
    suite = gx.ExpectationSuite(name=document["name"], expectations=expectations)
    if len(suite.expectations) != len(expectations):
        # GX drops expectations of unknown type with only a log line; a contract must not shrink silently.
        raise ValueError(f"data contract {document['name']}: some expectation types are unknown to Great Expectations")
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": EXAMPLES_PER_FAILURE,
        "return_unexpected_index_query": False,
    }
    if example_column in frame.columns:
        result_format["unexpected_index_column_names"] = [example_column]
    result = batch.validate(suite, expectation_parameters=parameters, result_format=result_format)
    ordered: list = [None] * len(expectations)
    for item in result.results:
        ordered[item.expectation_config.meta["position"]] = item
    return ordered, result


def _outcome(expectation: dict, result, example_column: str) -> ExpectationOutcome:
    """Turn one GX result into an ExpectationOutcome with a few example rows."""
    details = result.result or {}
    meta = expectation.get("meta", {})
    examples = []
    for index_entry in details.get("partial_unexpected_index_list") or []:
        if isinstance(index_entry, dict) and example_column in index_entry:
            examples.append(str(index_entry[example_column]))
    exception = _exception_message(result.exception_info)
    return ExpectationOutcome(
        expectation=expectation["type"],
        column=expectation["kwargs"].get("column"),
        severity=meta.get("severity", "hard"),
        check=meta.get("check", ""),
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        element_count=details.get("element_count"),
        observed=_json_safe(details.get("observed_value")) if exception is None else f"error: {exception}",
        examples=examples[:EXAMPLES_PER_FAILURE],
        unexpected_values=_distinct(details.get("partial_unexpected_list") or []),
    )


def _distinct(values: list) -> list:
    """The first few distinct values, as JSON-friendly Python values, in order of appearance."""
    seen: list = []
    for value in values:
        value = _json_safe(value)
        if value not in seen:
            seen.append(value)
    return seen[:EXAMPLES_PER_FAILURE]


def _exception_message(exception_info: Any) -> str | None:
    """The message of an error GX hit while computing a check, if any (GX nests it two ways)."""
    if not isinstance(exception_info, dict):
        return None
    candidates = [exception_info, *[value for value in exception_info.values() if isinstance(value, dict)]]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return str(candidate.get("exception_message"))
    return None


def _json_safe(value: Any) -> Any:
    """Observed values as plain JSON types (GX may return NumPy scalars or long lists)."""
    if value is None:
        return None
    if isinstance(value, list):
        return value[:20]
    if hasattr(value, "item"):
        return value.item()
    return value

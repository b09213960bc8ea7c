"""How a data contract's verdict reaches people: a JSON report, a Prefect artifact, warnings, a stop.

Every boundary (the raw manifest, the split files, a drop's predictions) reports the same way:
the JSON report beside the data, a markdown table of every expectation in the Prefect UI, a
logged warning per soft breach, and on a hard breach a ContractBreachError whose message names
the expectation, the column, how many rows broke it, a few examples and where the report is.
"""

from __future__ import annotations

from pathlib import Path

from visionflow.atomic import write_json_atomically
from visionflow.data_contracts.contract_suites import ContractReport
from visionflow.errors import ContractBreachError
from visionflow.run_context import publish_markdown, run_logger


def breach_message(reports: list[ContractReport]) -> str:
    """A message for a person: each hard failure on its own line."""
    lines = []
    for report in reports:
        for failure in report.hard_failures:
            lines.append(f"  - [{report.suite} / {report.target}] {failure.describe()}")
    return "data contract breached, the run stopped before using the data:\n" + "\n".join(lines)


def report_markdown(reports: list[ContractReport], title: str) -> str:
    """A markdown table of every expectation's outcome, for the Prefect UI."""
    lines = [
        f"# {title}",
        "",
        "| suite | target | expectation | column | severity | result | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        for outcome in report.outcomes:
            result = "pass" if outcome.success else ("FAIL" if outcome.severity == "hard" else "warn")
            detail = "" if outcome.success else outcome.describe().replace("|", "/")
            lines.append(
                f"| {report.suite} | {report.target} | {outcome.expectation} | {outcome.column or ''} "
                f"| {outcome.severity} | {result} | {detail} |"
            )
    pages = [f"- [{report.suite} / {report.target}]({report.docs_url})" for report in reports if report.docs_url]
    if pages:
        lines += ["", "Great Expectations Data Docs (open on the machine that ran it):", *pages]
    return "\n".join(lines)


def write_report(reports: list[ContractReport], path: Path) -> Path:
    """Write the reports as JSON, atomically."""
    return write_json_atomically(path, [report.to_dict() for report in reports])


def publish_contract_reports(reports: list[ContractReport], report_path: Path, artifact_key: str, title: str) -> None:
    """Write the JSON report and the Prefect artifact; warn on soft breaches; raise on hard ones."""
    log = run_logger(__name__)
    write_report(reports, Path(report_path))
    publish_markdown(artifact_key, report_markdown(reports, title), title)
    for report in reports:
        for warning in report.soft_failures:
            log.warning("data contract warning [%s / %s] %s", report.suite, report.target, warning.describe())
    if any(not report.success for report in reports):
        raise ContractBreachError(f"{breach_message(reports)}\nfull report: {report_path}")
    log.info("%s: all hard expectations passed (report: %s)", title, report_path)

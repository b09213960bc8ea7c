"""The data contracts, Great Expectations aside: their suites, and the report of validating against one.

A suite is a version-controlled JSON file beside this module, one per dataset boundary; its
meta.contract_version names the contract's version and each expectation's meta.severity says
whether breaking it stops a run ("hard") or only warns ("soft"). data_contracts/gx_validation.py
runs a suite with GX and returns a ContractReport: plain data a person, a log line, a JSON file
or a Prefect artifact can use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUITES_DIR = Path(__file__).parent


@dataclass
class ExpectationOutcome:
    """One expectation's result, in the words a report needs."""

    expectation: str  # GX expectation type, e.g. "expect_column_values_to_be_in_set".
    column: str | None  # The column it checks, or None for table-level checks.
    severity: str  # "hard" stops the run, "soft" warns.
    check: str  # What the expectation means for visionflow, in plain words.
    success: bool
    unexpected_count: int | None = None  # Rows that broke it, when the check is row by row.
    element_count: int | None = None  # Rows it looked at.
    observed: Any = None  # The observed value, for table-level checks such as row counts.
    examples: list[str] = field(default_factory=list)  # A few offending rows, by their example column.
    unexpected_values: list[Any] = field(default_factory=list)  # A few distinct offending values.

    def describe(self) -> str:
        """One line a person can act on: what broke, where, how much, and examples."""
        where = f"column '{self.column}'" if self.column else "table"
        amount = ""
        if self.unexpected_count is not None:
            amount = f": {self.unexpected_count} of {self.element_count} rows"
        elif self.observed is not None:
            amount = f": observed {self.observed}"
        values = f", values {self.unexpected_values}" if self.unexpected_values else ""
        examples = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{self.expectation} on {where} failed{amount}{values}{examples} — {self.check}"


@dataclass
class ContractReport:
    """The outcome of validating one frame against one suite."""

    suite: str  # Suite name, e.g. "raw_manifest".
    contract_version: str  # The suite's meta.contract_version.
    target: str  # What was validated, e.g. "manifest" or "train split".
    outcomes: list[ExpectationOutcome]
    docs_url: str | None = None  # This validation's page in the GX Data Docs site, when one is kept.

    @property
    def hard_failures(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success and outcome.severity == "hard"]

    @property
    def soft_failures(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success and outcome.severity != "hard"]

    @property
    def success(self) -> bool:
        """True when no hard expectation failed (soft failures only warn)."""
        return not self.hard_failures

    def to_dict(self) -> dict:
        return {
            "suite": self.suite,
            "contract_version": self.contract_version,
            "target": self.target,
            "success": self.success,
            "failed": [outcome.expectation for outcome in self.hard_failures],
            "warnings": [outcome.expectation for outcome in self.soft_failures],
            "outcomes": [asdict(outcome) for outcome in self.outcomes],
            "docs_url": self.docs_url,
        }


def load_suite(name: str) -> dict:
    """The suite's JSON document, as stored in data_contracts/<name>.json."""
    path = SUITES_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(candidate.stem for candidate in SUITES_DIR.glob("*.json"))
        raise ValueError(f"no data contract named {name!r}; known contracts: {', '.join(known)}")
    return json.loads(path.read_text())


def contract_version(name: str) -> str:
    """The version string a suite declares in its meta."""
    return str(load_suite(name)["meta"]["contract_version"])

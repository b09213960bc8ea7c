"""The predictions contract on a drop's rows, read back from disk."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from visionflow.data_contracts.contract_suites import contract_version
from visionflow.errors import ContractBreachError
from visionflow.ledger.drops import PREDICTIONS, DropOutputs, predictions_table
from visionflow.ledger.ledger import PredictionLedger
from visionflow.tasks.score.validate_predictions import (
    PredictionContractConfig,
    validate_predictions,
    validate_predictions_task,
)

CLASSES = ["cat", "dog"]
SHA = ["a" * 64, "b" * 64]
WHEN = ["2026-11-29T10:00:00+00:00"] * 2


def write(outputs: DropOutputs, probabilities, paths=("x.png", "y.png"), labels_from=None) -> str:
    table = predictions_table(
        list(paths), SHA[: len(paths)], np.asarray(probabilities), WHEN[: len(paths)], CLASSES, "v1"
    )
    if labels_from is not None:
        table = table.set_column(table.schema.get_field_index("label"), "label", [labels_from])
    files = [(path, sha256, "predicted") for path, sha256 in zip(paths, SHA, strict=False)]
    # A ledger of its own per part: the tests below record in the drop's ledger what they need.
    with PredictionLedger(outputs.root.parent / f"scratch-{uuid.uuid4().hex}.sqlite") as ledger:
        return outputs.save_part(PREDICTIONS, table, ledger, files, [], "v1")


@pytest.fixture
def outputs(tmp_path):
    outputs = DropOutputs(tmp_path / "predictions" / "drop")
    part = write(outputs, [[0.3, 0.7], [0.9, 0.1]])
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        files = [("x.png", SHA[0], "predicted"), ("y.png", SHA[1], "predicted")]
        ledger.commit_part("drop", PREDICTIONS, part, files, [], "v1")
    return outputs


def test_rows_that_match_the_ledger_pass(outputs, tmp_path):
    result = validate_predictions_task.fn(
        outputs.predictions, CLASSES, "v1", "drop", tmp_path / "ledger.sqlite", tmp_path / "report.json",
        PredictionContractConfig(),
    )  # fmt: skip
    assert result.success and result.report == str(tmp_path / "report.json") and (tmp_path / "report.json").is_file()
    assert result.contract_version == contract_version("predictions")


def test_a_duplicated_row_breaks_uniqueness_and_the_row_count(outputs, tmp_path):
    write(outputs, [[0.3, 0.7]], paths=("x.png",))
    report = validate_predictions(outputs.predictions, CLASSES, "v1", 2, PredictionContractConfig())
    failed = {outcome.expectation for outcome in report.hard_failures}
    assert failed == {"expect_table_row_count_to_equal", "expect_compound_columns_to_be_unique"}


def test_probabilities_that_do_not_sum_to_one_and_a_wrong_label_are_breaches(tmp_path):
    outputs = DropOutputs(tmp_path / "drop")
    write(outputs, [[0.3, 0.3], [0.9, 0.1]], labels_from=["cat", "dog"])
    report = validate_predictions(outputs.predictions, CLASSES, "v1", 2, PredictionContractConfig())
    broken = {outcome.column for outcome in report.hard_failures}
    assert broken == {"probability_sum", "label_is_argmax"}
    with pytest.raises(ContractBreachError, match="probability_sum"):
        validate_predictions_task.fn(
            outputs.predictions, CLASSES, "v1", "drop", tmp_path / "empty-ledger.sqlite", tmp_path / "r.json",
            PredictionContractConfig(),
        )  # fmt: skip


def test_a_drop_without_prediction_rows_passes_with_zero_expected(tmp_path):
    report = validate_predictions(tmp_path / "no-parts-yet", CLASSES, "v1", 0, PredictionContractConfig())
    assert report.success, [outcome.describe() for outcome in report.hard_failures]


def test_parts_of_a_model_with_other_classes_do_not_break_the_read(outputs):
    other = predictions_table(["z.png"], ["c" * 64], np.array([[1.0]]), WHEN[:1], ["bird"], "v2")
    with PredictionLedger(outputs.root.parent / "scratch-other.sqlite") as ledger:
        outputs.save_part(PREDICTIONS, other, ledger, [("z.png", "c" * 64, "predicted")], [], "v2")
    report = validate_predictions(outputs.predictions, CLASSES, "v1", 3, PredictionContractConfig())
    assert [outcome.expectation for outcome in report.hard_failures] == ["expect_table_row_count_to_equal"]

"""A scoring run's rows wait in the buffer and are written and committed a Parquet part at a time, with the
run's tallies kept as they go."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from visionflow.ledger.drops import PREDICTIONS, REJECTIONS, DropOutputs
from visionflow.ledger.ledger import PENDING, PredictionLedger, part_files
from visionflow.models.registry import ModelRecord
from visionflow.tasks.score.streaming.part_buffer import MAX_REJECTION_EXAMPLES, PartBuffer

VERSION = "v0001"
ANT, BEE = "a" * 64, "b" * 64
SURE_ANT = np.array([0.95, 0.05], np.float32)
LEANING_BEE = np.array([0.45, 0.55], np.float32)
SCORED_AT = "2026-03-01T12:00:00.000000+00:00"


@pytest.fixture
def ledger(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as opened:
        yield opened


@pytest.fixture
def outputs(tmp_path) -> DropOutputs:
    return DropOutputs(tmp_path / "predictions" / "drop-1")


def buffer_for(outputs: DropOutputs, ledger: PredictionLedger, part_rows: int) -> PartBuffer:
    record = ModelRecord(version=VERSION, model_path="model.keras", class_names=["ant", "bee"], input_shape=(8, 8, 3))
    return PartBuffer(outputs, ledger, record, part_rows)


def test_prediction_rows_are_written_and_committed_a_part_at_a_time(outputs, ledger):
    buffer = buffer_for(outputs, ledger, part_rows=3)
    buffer.add_predictions(["ant-1.png", "ant-2.png"], ANT, SURE_ANT, SCORED_AT, new=True)
    assert part_files(outputs.predictions) == [] and buffer.prediction_rows == 0
    buffer.add_predictions(["bee.png"], BEE, LEANING_BEE, SCORED_AT, new=False)  # Scored by an earlier run.
    (part,) = part_files(outputs.predictions)
    table = pq.read_table(part)
    assert table.column("path").to_pylist() == ["ant-1.png", "ant-2.png", "bee.png"]
    assert table.column("label").to_pylist() == ["ant", "ant", "bee"]
    expected = np.array([0.05, 0.05, 0.55], np.float32)
    np.testing.assert_array_equal(table.column("probability_bee").to_numpy(), expected)
    assert ledger.parts("drop-1", PREDICTIONS) == {part.name}
    assert ledger.recorded_files("drop-1", VERSION) == {
        ("ant-1.png", ANT): "predicted",
        ("ant-2.png", ANT): "predicted",
        ("bee.png", BEE): "predicted",
    }
    # Only the content this run predicted becomes the ledger's; the other was the ledger's already.
    known = ledger.known_probabilities([ANT, BEE], VERSION)
    assert list(known) == [ANT]
    np.testing.assert_array_equal(known[ANT][0], SURE_ANT)
    assert buffer.prediction_rows == 3 and buffer.paths == [] and buffer.new_predictions == []
    assert buffer.confidences.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert buffer.profile.class_counts() == {"ant": 2, "bee": 1}


def test_the_rest_waits_for_the_last_flush_and_an_empty_flush_writes_nothing(outputs, ledger):
    buffer = buffer_for(outputs, ledger, part_rows=2)
    buffer.flush_predictions()
    buffer.flush_rejections()
    assert part_files(outputs.predictions) == part_files(outputs.rejections) == []
    for index in range(3):
        buffer.add_predictions([f"ant-{index}.png"], ANT, SURE_ANT, SCORED_AT, new=index == 0)
    assert len(part_files(outputs.predictions)) == 1
    buffer.flush_predictions()
    parts = part_files(outputs.predictions)
    assert len(parts) == 2 and sum(pq.read_table(part).num_rows for part in parts) == 3
    assert ledger.parts("drop-1", PREDICTIONS) == {part.name for part in parts}
    assert buffer.prediction_rows == 3 and ledger.accepted_count("drop-1", VERSION) == 3


def test_rejections_are_written_with_what_is_known_of_each_file_and_examples_are_capped(outputs, ledger):
    buffer = buffer_for(outputs, ledger, part_rows=2)
    buffer.add_rejection("unreadable.png", None, None, "permission denied")
    buffer.add_rejection("notes.png", ANT, 120, "not an image")
    (part,) = part_files(outputs.rejections)
    table = pq.read_table(part)
    assert table.column("sha256").to_pylist() == [None, ANT]
    assert table.column("bytes").to_pylist() == [None, 120]
    assert table.column("reason").to_pylist() == ["permission denied", "not an image"]
    assert ledger.parts("drop-1", REJECTIONS) == {part.name}
    assert ledger.recorded_files("drop-1", VERSION) == {
        ("unreadable.png", ""): "rejected",
        ("notes.png", ANT): "rejected",
    }
    assert buffer.rejection_rows == 2 and buffer.rejections == []
    for index in range(MAX_REJECTION_EXAMPLES):
        buffer.note_rejection(f"earlier-{index}.png", "not an image")  # Written by an earlier run.
    assert len(buffer.rejection_examples) == MAX_REJECTION_EXAMPLES
    first = buffer.rejection_examples[0]
    assert (first.path, first.reason) == ("unreadable.png", "permission denied")


def test_probabilities_for_another_number_of_classes_are_refused_before_anything_is_written(outputs, ledger):
    buffer = buffer_for(outputs, ledger, part_rows=1)
    with pytest.raises(ValueError):
        buffer.add_predictions(["odd.png"], ANT, np.array([0.2, 0.3, 0.5], np.float32), SCORED_AT, new=True)
    assert part_files(outputs.predictions) == []
    assert ledger.parts("drop-1", PREDICTIONS) == ledger.parts("drop-1", PREDICTIONS, PENDING) == set()
    assert ledger.known_probabilities([ANT], VERSION) == {} and buffer.prediction_rows == 0

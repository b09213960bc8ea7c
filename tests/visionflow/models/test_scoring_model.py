"""Choosing a model's engine, and loading it on that engine: checked, cached, and refused once changed."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.engines.engine_exports import EngineExport, ModelExports
from visionflow.engines.runtimes import OnnxRuntimePredictor, OpenVinoPredictor
from visionflow.errors import DamagedStateError, InvalidSettingError
from visionflow.models import scoring_model
from visionflow.models.prediction import predict_probabilities
from visionflow.models.registry import find_model
from visionflow.models.scoring_model import (
    ScoringModel,
    choose_engine,
    load_scoring_model,
    resolve_engine,
    scoring_model_is_warm,
)

from tests.engine_helpers import random_images, register_exported_model
from tests.scoring_helpers import CLASSES, SHAPE

RUNTIMES = {"onnx": OnnxRuntimePredictor, "openvino": OpenVinoPredictor}


def export(engine: str, passed: bool = True, speed: float = 100.0) -> EngineExport:
    file = "model-int8.onnx" if engine.endswith("-int8") else "model.onnx"
    reason = "parity: top-1 agrees" if passed else "top-1 agrees on 97.00%: below the 99.9% agreement parity needs"
    return EngineExport(
        engine=engine, file=file, sha256="0" * 64, passed=passed, reason=reason, images_per_second=speed
    )


EXPORTS = ModelExports(
    flip_tta=False,
    engines=[
        export("onnx", speed=700.0),
        export("openvino", speed=900.0),
        export("onnx-int8", speed=3000.0),
        export("openvino-int8", passed=False, speed=4000.0),
    ],
)


def test_keras_is_keras_whatever_was_exported():
    assert choose_engine(EXPORTS, "keras", "v0001") == "keras"
    assert choose_engine(None, "keras", "v0001") == "keras"


def test_auto_takes_the_fastest_passed_float32_export():
    assert choose_engine(EXPORTS, "auto", "v0001") == "openvino"


@pytest.mark.parametrize(
    "exports",
    [
        None,
        ModelExports(flip_tta=False, failure="the ONNX export failed (RuntimeError: no)"),
        ModelExports(flip_tta=False, engines=[export("onnx", passed=False), export("onnx-int8")]),
    ],
    ids=["never-exported", "export-failed", "none-passed"],
)
def test_auto_falls_back_to_keras_without_a_passed_float32_export(exports):
    assert choose_engine(exports, "auto", "v0001") == "keras"


def test_a_named_passed_export_is_taken_even_when_slower_or_int8():
    assert choose_engine(EXPORTS, "onnx", "v0001") == "onnx"
    assert choose_engine(EXPORTS, "onnx-int8", "v0001") == "onnx-int8"


def test_a_named_engine_without_an_export_says_how_to_make_it():
    only_onnx = ModelExports(flip_tta=False, engines=[export("onnx")])
    with pytest.raises(InvalidSettingError) as raised:
        choose_engine(only_onnx, "openvino", "v0004")
    assert raised.value.exit_code == 2
    assert "model v0004 has no openvino export" in str(raised.value)
    assert "`visionflow models export v0004`" in str(raised.value)
    assert "--engine auto or keras" in str(raised.value)
    with pytest.raises(InvalidSettingError, match=r"`visionflow models export v0004 --int8`"):
        choose_engine(None, "onnx-int8", "v0004")


def test_a_named_engine_whose_export_was_refused_says_why_and_what_to_use():
    with pytest.raises(InvalidSettingError) as raised:
        choose_engine(EXPORTS, "openvino-int8", "v0004")
    assert "below the 99.9% agreement parity needs" in str(raised.value)
    assert "--engine auto or keras" in str(raised.value)


@pytest.fixture
def exported_record(tmp_path):
    """The record of a registered, exported tiny model (scoring on Keras until an engine is set)."""
    version = register_exported_model(tmp_path / "models", tmp_path / "dataset")
    return find_model(tmp_path / "models", version)


def test_resolve_engine_chooses_from_the_records_exports(exported_record):
    assert resolve_engine(exported_record, "auto") == exported_record.exports.fastest_passed().engine
    assert resolve_engine(exported_record, "openvino") == "openvino"
    assert resolve_engine(exported_record, "keras") == "keras"


@pytest.mark.parametrize("engine", sorted(RUNTIMES))
def test_an_exported_model_loads_once_on_its_engine_and_predicts_as_keras(exported_record, engine):
    record = exported_record.model_copy(update={"engine": engine})
    assert not scoring_model_is_warm(record)
    loaded = load_scoring_model(record)
    assert isinstance(loaded, ScoringModel)
    assert loaded.engine == engine
    assert isinstance(loaded.runtime, RUNTIMES[engine])
    assert loaded.trained_with_flips is False
    assert loaded.input_shape == (None, *SHAPE)
    assert loaded.output_shape == (None, len(CLASSES))
    assert load_scoring_model(record) is loaded
    assert scoring_model_is_warm(record)
    images = random_images(9, seed=8)
    keras_model = load_scoring_model(exported_record)
    assert keras_model.engine == "keras"
    np.testing.assert_allclose(
        predict_probabilities(loaded, images, 4), predict_probabilities(keras_model, images, 4), rtol=0, atol=1e-5
    )


def test_a_changed_export_file_is_refused_even_after_it_was_loaded(exported_record):
    record = exported_record.model_copy(update={"engine": "onnx"})
    load_scoring_model(record)
    path = record.folder / record.exports.export_of("onnx").file
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DamagedStateError) as raised:
        load_scoring_model(record)
    assert raised.value.exit_code == 6
    assert "`visionflow models export" in str(raised.value)


def test_a_changed_export_file_is_never_opened(exported_record, monkeypatch):
    opened = []
    monkeypatch.setattr(scoring_model, "open_runtime", lambda engine, path: opened.append(path))
    record = exported_record.model_copy(update={"engine": "openvino"})
    path = record.folder / record.exports.export_of("openvino").file
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF  # One flipped byte in the weights: the same size, another model.
    path.write_bytes(bytes(content))
    with pytest.raises(DamagedStateError, match="has changed since it was exported"):
        load_scoring_model(record)
    assert opened == []
    assert not scoring_model_is_warm(record)


def test_an_engine_the_record_has_no_export_for_is_refused(exported_record):
    record = exported_record.model_copy(update={"exports": None, "engine": "onnx"})
    with pytest.raises(InvalidSettingError, match=f"model {record.version} has no onnx export"):
        load_scoring_model(record)

"""The ONNX file of a tiny model's inference twin, run on ONNX Runtime and OpenVINO, and its int8 variant."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visionflow.engines.engine_exports import FP32_FILE, INT8_FILE
from visionflow.engines.int8 import quantize_int8
from visionflow.engines.onnx_export import export_onnx
from visionflow.engines.runtimes import OnnxRuntimePredictor, OpenVinoPredictor, open_runtime
from visionflow.network.build_model import build_model
from visionflow.network.inference_twin import inference_twin
from visionflow.tasks.train.recipe.presets import PRESETS

from tests.engine_helpers import random_images

SHAPE = (12, 12, 3)
CLASSES = 3
# Both runtimes compute the same float32 graph as Keras, in another order: probabilities differ by
# float32 rounding only, far inside the 1e-3 the parity check allows.
RUNTIME_TOLERANCE = 1e-5
RUNTIMES = {"onnx": OnnxRuntimePredictor, "openvino": OpenVinoPredictor}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(the tiny network's float32 twin, the folder holding its model.onnx)."""
    keras.utils.set_random_seed(3)
    twin = inference_twin(build_model(PRESETS["tiny"].model, SHAPE, CLASSES))
    folder = tmp_path_factory.mktemp("exported")
    assert export_onnx(twin, folder / FP32_FILE) == folder / FP32_FILE
    return twin, folder


def test_export_writes_one_onnx_file_and_no_temporary_one(exported):
    _twin, folder = exported
    assert sorted(path.name for path in folder.iterdir()) == [FP32_FILE]
    assert (folder / FP32_FILE).stat().st_size > 0


@pytest.mark.parametrize("engine", sorted(RUNTIMES))
def test_each_runtime_gives_the_twins_probabilities_for_any_batch_size(exported, engine):
    twin, folder = exported
    predictor = open_runtime(engine, folder / FP32_FILE)
    assert isinstance(predictor, RUNTIMES[engine])
    assert predictor.input_shape == SHAPE
    for size in (1, 3, 7):
        images = random_images(size, SHAPE, seed=size)
        probabilities = predictor.predict_on_batch(images)
        assert probabilities.shape == (size, CLASSES)
        assert probabilities.dtype == np.float32
        expected = keras.ops.convert_to_numpy(twin(images, training=False))
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=RUNTIME_TOLERANCE)


def test_the_untrained_network_is_not_constant_so_parity_means_something(exported):
    twin, _folder = exported
    probabilities = keras.ops.convert_to_numpy(twin(random_images(7, SHAPE, seed=7), training=False))
    assert np.ptp(probabilities, axis=0).max() > 100 * RUNTIME_TOLERANCE


def test_open_runtime_refuses_keras_which_needs_no_export(exported):
    _twin, folder = exported
    with pytest.raises(ValueError, match="'keras' is not an exported engine"):
        open_runtime("keras", folder / FP32_FILE)


def test_int8_file_loads_on_both_runtimes_with_the_float32_files_input_and_output(exported, tmp_path):
    _twin, folder = exported
    calibration = random_images(40, SHAPE, seed=11)
    int8_path = tmp_path / INT8_FILE
    assert quantize_int8(folder / FP32_FILE, int8_path, calibration) == int8_path
    assert int8_path.is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == [INT8_FILE]
    images = random_images(5, SHAPE, seed=12)
    for engine in ("onnx-int8", "openvino-int8"):
        predictor = open_runtime(engine, int8_path)
        assert predictor.input_shape == SHAPE
        probabilities = predictor.predict_on_batch(images)
        assert probabilities.shape == (5, CLASSES)
        assert probabilities.dtype == np.float32
        # The softmax stays in float32, so each row still sums to 1 as the predictions contract checks.
        assert ((probabilities >= 0) & (probabilities <= 1)).all()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_int8_file_is_quantised_and_the_float32_file_is_not(exported, tmp_path):
    import onnx

    _twin, folder = exported
    quantize_int8(folder / FP32_FILE, tmp_path / INT8_FILE, random_images(16, SHAPE, seed=13))
    operators = {node.op_type for node in onnx.load(str(tmp_path / INT8_FILE)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    assert "QuantizeLinear" not in {node.op_type for node in onnx.load(str(folder / FP32_FILE)).graph.node}

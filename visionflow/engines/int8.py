"""Quantising an exported ONNX model to int8 with ONNX Runtime's static quantisation.

Weights are quantised per output channel and activations per tensor, with ranges calibrated on
a sample of the training split; the result keeps the float32 file's input and output, so both
runtimes run it as they run the float32 file. Whether it may score is the caller's decision, on
its test accuracy (visionflow/models/model_export.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from visionflow.atomic import atomic_path

CALIBRATION_BATCH = 64  # Images per calibration step; the ranges are the same for any batch size.


def _softmax_nodes(path: Path) -> list[str]:
    """The graph's softmax nodes, which stay in float32: probabilities quantised to steps of 1/255
    would no longer sum to 1, and the predictions contract checks that they do."""
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Softmax"]


def quantize_int8(fp32_path: Path, int8_path: Path, calibration_images: np.ndarray) -> Path:
    """Write the int8 model of the float32 ONNX file, calibrated on uint8 images; return int8_path."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self, input_name: str) -> None:
            steps = range(0, len(calibration_images), CALIBRATION_BATCH)
            self.batches = iter(
                [{input_name: calibration_images[start : start + CALIBRATION_BATCH]} for start in steps]
            )

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    from visionflow.engines.onnx_export import INPUT_NAME

    with tempfile.TemporaryDirectory(prefix="visionflow-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Symbolic shape inference needs sympy and adds nothing for a fixed-size image network.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with atomic_path(int8_path) as temporary:
            quantize_static(
                str(prepared),
                str(temporary),
                Batches(INPUT_NAME),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=_softmax_nodes(prepared),
            )
    return Path(int8_path)

"""Running an exported ONNX model on ONNX Runtime or OpenVINO, without TensorFlow.

Both take uint8 images (N x H x W x C, as scoring decodes them) and return class probabilities,
the interface of Keras' predict_on_batch, so visionflow/models/prediction.py predicts through any
of them the same way. Only this module imports the runtimes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from visionflow.engines.engine_exports import Engine


class Predictor(Protocol):
    """Anything that turns a batch of uint8 images into float32 class probabilities."""

    input_shape: tuple[int, ...]  # (height, width, channels) of the images it takes.

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray: ...


class OnnxRuntimePredictor:
    """An ONNX Runtime session on the CPU, its threads the machine's cores."""

    def __init__(self, path: Path) -> None:
        import onnxruntime  # Imported here: only the processes that score with it pay for it.

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # Warnings about unused initialisers are noise to a user.
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(int(size) for size in self.session.get_inputs()[0].shape[1:])

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})[0]


class OpenVinoPredictor:
    """An OpenVINO model compiled for the CPU, computing in float32 (int8 where the file is quantised).

    OpenVINO computes in bfloat16 by default on CPUs that have it; float32 keeps its probabilities
    those the parity check measured. One infer request per thread: a compiled model's requests are
    not shared between threads.
    """

    def __init__(self, path: Path) -> None:
        import openvino  # Imported here: only the processes that score with it pay for it.

        core = openvino.Core()
        self.compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.input_shape = tuple(int(size.get_length()) for size in self.compiled.input(0).get_partial_shape()[1:])
        self._requests = threading.local()

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        request.infer([np.ascontiguousarray(images)])
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)


def open_runtime(engine: Engine, path: Path) -> Predictor:
    """A predictor running the ONNX file at path on the engine's runtime."""
    if engine in ("onnx", "onnx-int8"):
        return OnnxRuntimePredictor(path)
    if engine in ("openvino", "openvino-int8"):
        return OpenVinoPredictor(path)
    raise ValueError(f"{engine!r} is not an exported engine: use onnx, openvino, onnx-int8 or openvino-int8")

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
    """An OpenVINO model compiled for the CPU's throughput, computing in float32 (int8 where the file is quantised).

    OpenVINO computes in bfloat16 by default on CPUs that have it; float32 keeps its probabilities
    those the parity check measured. Compiled for throughput, it runs one inference stream per
    group of cores; a batch is split into one part per stream, predicted at once, and joined in
    order, which on two cores predicted 1.24x (float32) and 1.31x (int8) the images per second of
    one latency-tuned request, with the same probabilities (docs/BENCHMARKS.md, *Inference engines*).
    """

    def __init__(self, path: Path) -> None:
        import openvino  # Imported here: only the processes that score with it pay for it.

        settings = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"}
        self.compiled = openvino.Core().compile_model(str(path), "CPU", settings)
        self.input_shape = tuple(int(size.get_length()) for size in self.compiled.input(0).get_partial_shape()[1:])
        self.streams = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue = openvino.AsyncInferQueue(self.compiled, self.streams)
        self._queue.set_callback(self._collect)
        self._parts: list[np.ndarray | None] = []
        self._lock = threading.Lock()  # One batch at a time: the queue's requests are shared.

    def _collect(self, request, index: int) -> None:
        self._parts[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32)

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        parts = np.array_split(images, min(self.streams, max(1, len(images))))
        with self._lock:
            self._parts = [None] * len(parts)
            for index, part in enumerate(parts):
                self._queue.start_async([np.ascontiguousarray(part)], index)
            self._queue.wait_all()
            return np.concatenate(self._parts)


def open_runtime(engine: Engine, path: Path) -> Predictor:
    """A predictor running the ONNX file at path on the engine's runtime."""
    if engine in ("onnx", "onnx-int8"):
        return OnnxRuntimePredictor(path)
    if engine in ("openvino", "openvino-int8"):
        return OpenVinoPredictor(path)
    raise ValueError(f"{engine!r} is not an exported engine: use onnx, openvino, onnx-int8 or openvino-int8")

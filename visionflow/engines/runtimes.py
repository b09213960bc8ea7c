"""Running an exported ONNX model on ONNX Runtime or OpenVINO, without TensorFlow.

Both take uint8 images (N x H x W x C, as scoring decodes them) and return class probabilities,
the interface of Keras' predict_on_batch, so visionflow/models/prediction.py predicts through any
of them the same way. Only this module imports the runtimes. Each loads the model from bytes the
caller has already checked (visionflow/engines/engine_exports.py), never from the file again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from visionflow.engines.engine_exports import Engine

# The module each engine runs on; a command may start importing it ahead of its flow.
RUNTIME_MODULES: dict[str, str] = {"keras": "keras", "onnx": "onnxruntime", "openvino": "openvino",
                                   "onnx-int8": "onnxruntime", "openvino-int8": "openvino"}  # fmt: skip


class Predictor(Protocol):
    """Anything that turns a batch of uint8 images into float32 class probabilities."""

    input_shape: tuple[int, ...]  # (height, width, channels) of the images it takes.
    num_classes: int  # Width of the probabilities it gives.

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray: ...


class OnnxRuntimePredictor:
    """An ONNX Runtime session on the CPU, its threads the machine's cores."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime  # Imported here: only the processes that score with it pay for it.

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # Warnings about unused initialisers are noise to a user.
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(int(size) for size in self.session.get_inputs()[0].shape[1:])
        self.num_classes = int(self.session.get_outputs()[0].shape[-1])

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})[0]


class OpenVinoPredictor:
    """An OpenVINO model compiled for the CPU's throughput, computing in float32 (int8 where the file is quantised).

    OpenVINO computes in bfloat16 by default on CPUs that have it; float32 keeps its probabilities
    those the parity check measured. Compiled for throughput, it runs one inference stream per
    group of cores; a batch is split into one part per stream, predicted at once, and joined in
    order, which on two cores predicted 1.24x (float32) and 1.31x (int8) the images per second of
    one latency-tuned request, with the same probabilities (docs/experiments/2026-12-07-engines.md).
    """

    def __init__(self, model: bytes) -> None:
        import openvino  # Imported here: only the processes that score with it pay for it.

        core = openvino.Core()
        settings = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"}
        self.compiled = core.compile_model(core.read_model(model), "CPU", settings)
        self.input_shape = tuple(int(size.get_length()) for size in self.compiled.input(0).get_partial_shape()[1:])
        self.num_classes = int(self.compiled.output(0).get_partial_shape()[-1].get_length())
        self.streams = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue = openvino.AsyncInferQueue(self.compiled, self.streams)
        self._queue.set_callback(_keep_output)
        self._lock = threading.Lock()  # One batch at a time: the queue's requests are shared.

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        parts = np.array_split(images, min(self.streams, max(1, len(images))))
        outputs: list[np.ndarray | None] = [None] * len(parts)
        with self._lock:
            try:
                for index, part in enumerate(parts):
                    self._queue.start_async([np.ascontiguousarray(part)], (outputs, index))
            finally:
                self._queue.wait_all()  # No request of this batch outlives the call, even on an error.
        if any(output is None for output in outputs):
            raise RuntimeError("OpenVINO returned no probabilities for part of a batch")
        return np.concatenate(outputs)


def _keep_output(request, destination: tuple[list, int]) -> None:
    """A finished request's probabilities, copied into its batch's own list at its part's place."""
    outputs, index = destination
    outputs[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32)


def open_runtime(engine: Engine, model: bytes | Path) -> Predictor:
    """A predictor running the ONNX model (its checked bytes, or a file being exported) on the engine's runtime."""
    if isinstance(model, Path):
        model = model.read_bytes()
    if RUNTIME_MODULES.get(engine) == "onnxruntime":
        return OnnxRuntimePredictor(model)
    if RUNTIME_MODULES.get(engine) == "openvino":
        return OpenVinoPredictor(model)
    raise ValueError(f"{engine!r} is not an exported engine: use onnx, openvino, onnx-int8 or openvino-int8")

"""Writing a Keras model's inference graph as an ONNX file, through the public tf2onnx converter.

The graph is the model's inference twin (visionflow/network/inference_twin.py: float32, the
augmentation layers as identities) traced over uint8 images of any batch size, so the ONNX file
takes exactly what scoring decodes and gives the model's softmax probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from visionflow.atomic import atomic_path

if TYPE_CHECKING:
    import keras

# ONNX operator set of the files: supported by ONNX Runtime 1.17+ and OpenVINO 2024+.
OPSET = 17
INPUT_NAME = "image"


def export_onnx(twin: keras.Model, path: Path) -> Path:
    """Write an inference twin's graph (network/inference_twin.py) to path, atomically; return path."""
    import tensorflow as tf  # Imported here: only exporting needs TensorFlow.
    import tf2onnx

    signature = [tf.TensorSpec([None, *twin.input_shape[1:]], tf.uint8, name=INPUT_NAME)]
    graph = tf.function(lambda image: twin(image, training=False), input_signature=signature)
    with atomic_path(path) as temporary:
        tf2onnx.convert.from_function(graph, input_signature=signature, opset=OPSET, output_path=str(temporary))
    return Path(path)

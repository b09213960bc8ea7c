"""Prediction: class probabilities of uint8 images from a model on any engine, with flip test-time augmentation.

Evaluation (on a test split), the gate (the champion on the candidate's test split) and scoring
(a drop) all predict through predict_probabilities, so a model scores an image the same way
wherever it meets it. The model is a Keras model or a ScoringModel (visionflow/models/
scoring_model.py), which gives Keras' predict_on_batch on any engine.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from visionflow.images.image_profile import pixel_histogram
from visionflow.models.registry import ModelRecord, load_checked_model, loaded_model

if TYPE_CHECKING:
    import keras


# Name of the identity layer that models trained with alternating flips carry: their training
# pipeline mirrored the images itself rather than through a RandomFlip layer. visionflow no longer
# trains such models, but ones already registered still predict with flip test-time augmentation.
MIRRORED_TRAINING_MARKER = "trained_on_mirrored_images"


class ShardPredictions(NamedTuple):
    """What predicting one shard of a drop's new contents gave: small records, no pixels."""

    sha256s: list[str]  # The contents predicted, in the order of the rows of probabilities.
    probabilities: np.ndarray  # float32, one row per content, one column per class.
    rejected: list[tuple[str, str]]  # (sha256, reason) of the contents that could not be decoded.
    pixel_histogram: np.ndarray  # channels x 256 counts of the predicted images' pixel values, for drift.


# Models of this process whose predict function is traced for any batch size (see load_warm_model),
# and the lock under which one thread loads and traces while another that needs the model waits.
_WARM_MODELS: weakref.WeakSet = weakref.WeakSet()
_WARM_LOCK = threading.Lock()


def load_warm_model(record: ModelRecord) -> keras.Model:
    """The record's checked model (registry.load_checked_model), its predict function already traced.

    In a fresh process, loading the `default` network and tracing its predict function cost about
    0.25 s and 0.2 s on two cores, as much as predicting 2,000 images and their mirrors; the score
    flow does both on a thread while it lists the drop (tasks/score/load_model.py). A second
    caller waits for the first's work and reuses it.
    """
    with _WARM_LOCK:
        model = load_checked_model(record)
        if model not in _WARM_MODELS:
            _trace_predict_function(model)
            _WARM_MODELS.add(model)
    return model


def model_is_warm(record: ModelRecord) -> bool:
    """Whether this process holds the record's model, unchanged on disk, loaded and traced."""
    model = loaded_model(record)
    return model is not None and model in _WARM_MODELS


def _trace_predict_function(model: keras.Model) -> None:
    """Predict one blank uint8 image, then two, as scoring feeds them uint8 batches.

    Keras traces its predict function for the first batch shape and, on seeing a second, once more
    for any batch size, so no later batch, full or a drop's shorter last one, traces it again. A
    function traced so ran the `default` network's batches of 256 as fast as one traced for
    exactly 256 (docs/BENCHMARKS.md, *Scoring a drop*), and two one-image traces cost 0.23 s against 0.18 s for one
    at 256 and 0.09 s more for each drop's last batch.
    """
    shape = tuple(model.input_shape[1:])
    for size in (1, 2):
        model.predict_on_batch(np.zeros((size, *shape), dtype=np.uint8))


def uses_flip_tta(model: keras.Model, flip_tta: bool | None) -> bool:
    """Whether predictions average each image with its mirror: as asked, else (None) exactly when the
    model was trained on mirrored images (it has a RandomFlip layer, or the marker of alternating flips).

    model may also be any predictor that says so itself (models/scoring_model.py's ScoringModel).
    """
    if flip_tta is not None:
        return flip_tta
    if hasattr(model, "trained_with_flips"):
        return bool(model.trained_with_flips)
    from keras.layers import RandomFlip  # Imported here: TensorFlow takes seconds to import.

    return any(isinstance(layer, RandomFlip) or layer.name == MIRRORED_TRAINING_MARKER for layer in model.layers)


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int, flip_tta: bool | None = None
) -> np.ndarray:
    """Class probabilities (N x classes, float32) for uint8 N x H x W x C images, batch_size at a time.

    With flip test-time augmentation (see uses_flip_tta), each row is the mean of the prediction for
    the image and for its mirror along the width axis. Only one batch (and its mirror) is held
    beside the output at a time.
    """
    outputs = None
    flip = uses_flip_tta(model, flip_tta)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        probabilities = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        if flip:
            mirrored = np.ascontiguousarray(batch[:, :, ::-1, :])
            probabilities = (probabilities + np.asarray(model.predict_on_batch(mirrored), dtype=np.float32)) / 2
        if outputs is None:
            outputs = np.empty((len(images), probabilities.shape[1]), dtype=np.float32)
        outputs[start : start + len(batch)] = probabilities
    if outputs is None:
        return np.empty((0, _class_count(model)), dtype=np.float32)
    return outputs


def _class_count(model) -> int:
    """The number of classes a Keras model or a ScoringModel predicts."""
    if hasattr(model, "num_classes"):
        return int(model.num_classes)
    return int(model.output_shape[-1])


def predict_images(
    model: keras.Model,
    images: np.ndarray,
    sha256s: list[str],
    rejected: list[tuple[str, str]],
    batch_size: int,
    flip_tta: bool | None,
) -> ShardPredictions:
    """The ShardPredictions of decoded uint8 images (one per content in sha256s)."""
    probabilities = predict_probabilities(model, images, batch_size, flip_tta)
    return ShardPredictions(list(sha256s), probabilities, list(rejected), pixel_histogram(images, images.shape[-1]))

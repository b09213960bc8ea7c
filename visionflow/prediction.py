"""Prediction: class probabilities of uint8 images from a Keras model, with flip test-time augmentation.

Evaluation (on a test split), the gate (the champion on the candidate's test split) and scoring
(a drop) all predict through predict_probabilities, so a model scores an image the same way
wherever it meets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras


def uses_flip_tta(model: keras.Model, flip_tta: bool | None) -> bool:
    """Whether predictions average each image with its mirror: as asked, else (None) exactly when the
    model was trained with random horizontal flips (it has a RandomFlip layer)."""
    if flip_tta is not None:
        return flip_tta
    from keras.layers import RandomFlip  # Imported here: TensorFlow takes seconds to import.

    return any(isinstance(layer, RandomFlip) for layer in model.layers)


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
        return np.empty((0, int(model.output_shape[-1])), dtype=np.float32)
    return outputs

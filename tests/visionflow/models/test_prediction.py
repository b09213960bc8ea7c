"""Prediction: batched class probabilities, and flip test-time augmentation as the mean with the mirror."""

from __future__ import annotations

import keras
import numpy as np

from visionflow.models.prediction import predict_probabilities, uses_flip_tta

SHAPE = (4, 6, 3)


def tiny_model(classes: int = 3, seed: int = 7) -> keras.Model:
    """uint8 input, rescaled, flattened, one softmax layer with seeded weights: not flip-invariant."""
    inputs = keras.Input(shape=SHAPE, dtype="uint8")
    hidden = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(hidden))
    kernel = np.random.default_rng(seed).normal(0.0, 1.0, size=(int(np.prod(SHAPE)), classes)).astype(np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(classes, dtype=np.float32)])
    return model


def random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *SHAPE), dtype=np.uint8)


def test_predictions_are_batched_probabilities_and_flip_tta_is_the_mean_with_the_mirror():
    model = tiny_model()
    images = random_images(7)
    plain = predict_probabilities(model, images, 3)
    assert plain.shape == (7, 3) and plain.dtype == np.float32
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(plain, model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    mirrored = predict_probabilities(model, images[:, :, ::-1, :].copy(), 3)
    assert not np.allclose(plain, mirrored, atol=1e-3), "the test model must not be flip-invariant"
    tta = predict_probabilities(model, images, 3, flip_tta=True)
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_no_images_give_an_empty_table_with_a_column_per_class():
    empty = predict_probabilities(tiny_model(classes=4), random_images(0), 8)
    assert empty.shape == (0, 4) and empty.dtype == np.float32


def test_flip_tta_follows_the_model_unless_asked():
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    features = keras.layers.Rescaling(1 / 255)(inputs)
    flat = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(features)))
    flipped = keras.layers.RandomFlip("horizontal")(features)
    trained_with_flips = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(flipped))
    )
    assert uses_flip_tta(flat, None) is False
    assert uses_flip_tta(trained_with_flips, None) is True
    assert uses_flip_tta(trained_with_flips, False) is False
    assert uses_flip_tta(flat, True) is True


def _counting_loads(monkeypatch, seconds: float = 0.0) -> list[str]:
    """Make the registry's loader record each load (and take `seconds`); the list of loaded versions."""
    import time

    from visionflow.models import registry

    loads: list[str] = []
    real = registry._load_and_check

    def counted(record):
        loads.append(record.version)
        time.sleep(seconds)
        return real(record)

    monkeypatch.setattr(registry, "_load_and_check", counted)
    return loads


def test_a_warm_model_predicts_any_batch_size_without_tracing_again(tmp_path, monkeypatch):
    from visionflow.models.prediction import load_warm_model, model_is_warm
    from visionflow.models.registry import find_model

    from tests.scoring_helpers import SHAPE as MODEL_SHAPE
    from tests.scoring_helpers import register_tiny_model

    loads = _counting_loads(monkeypatch)
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    assert not model_is_warm(record)
    model = load_warm_model(record)
    assert model_is_warm(record) and load_warm_model(record) is model and loads == [record.version]
    traces = model.predict_function.experimental_get_tracing_count()
    images = np.random.default_rng(0).integers(0, 256, size=(20, *MODEL_SHAPE), dtype=np.uint8)
    for batch_size in (8, 20, 3):
        probabilities = predict_probabilities(model, images, batch_size, flip_tta=True)
        assert probabilities.shape == (20, 3)
    assert model.predict_function.experimental_get_tracing_count() == traces, "no batch size traces it again"


def test_two_threads_asking_for_a_model_load_and_trace_it_once(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from visionflow.models.prediction import load_warm_model
    from visionflow.models.registry import find_model

    from tests.scoring_helpers import register_tiny_model

    loads = _counting_loads(monkeypatch, seconds=0.3)
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    with ThreadPoolExecutor(2) as pool:
        models = list(pool.map(lambda _: load_warm_model(record), range(2)))
    assert models[0] is models[1] and loads == [record.version]


def test_a_registered_model_trained_on_mirrored_images_keeps_flip_tta(tmp_path):
    """Models trained with alternating flips carry a marker layer instead of RandomFlip; they still
    predict with flip test-time augmentation after a save and a load, and a model with neither does not."""
    import keras

    from visionflow.models.prediction import MIRRORED_TRAINING_MARKER, uses_flip_tta

    def small_model(marked: bool) -> keras.Model:
        inputs = keras.Input((8, 8, 3))
        features = keras.layers.Rescaling(1 / 255)(inputs)
        if marked:
            features = keras.layers.Identity(name=MIRRORED_TRAINING_MARKER)(features)
        outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
        return keras.Model(inputs, outputs)

    for marked in (True, False):
        path = tmp_path / f"marked-{marked}.keras"
        small_model(marked).save(path)
        assert uses_flip_tta(keras.models.load_model(path, safe_mode=True), None) is marked

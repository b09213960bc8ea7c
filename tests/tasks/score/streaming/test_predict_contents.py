"""Predicting a drop's contents here: the pipelined predictor gives what one batch at a time gives."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from visionflow.images.image_profile import pixel_histogram
from visionflow.images.imaging import ImageSpec, decode_image, pixels_to_array
from visionflow.models.prediction import predict_probabilities
from visionflow.models.registry import find_model, load_checked_model
from visionflow.tasks.score.streaming.predict_contents import BATCHES_IN_FLIGHT, ScoreConfig, _predict_here

from tests.conftest import write_image
from tests.scoring_helpers import SHAPE, register_tiny_model


@pytest.fixture
def model(tmp_path):
    register_tiny_model(tmp_path / "models")
    return load_checked_model(find_model(tmp_path / "models"))


def _drop(root: Path, images: int) -> list[tuple[str, str, int]]:
    """Work rows (path, sha256, bytes) of images images and two undecodable files among them."""
    paths = [
        write_image(root / f"image-{index:02d}.png", (30 * index % 255, 90, 160), seed=index) for index in range(images)
    ]
    for broken in (root / "broken-a.jpg", root / "broken-b.png"):
        broken.write_bytes(b"not an image at all")
    paths[3:3] = [root / "broken-a.jpg"]
    paths.append(root / "broken-b.png")
    return [(str(path), hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size) for path in paths]


def test_the_pipelined_predictor_yields_each_batch_in_order_as_predicted_one_at_a_time(model, tmp_path):
    work = _drop(tmp_path / "drop", 11)
    config = ScoreConfig(workers=1, files_per_chunk=3, batch_size=4, chunks_in_flight_per_worker=1)
    spec = ImageSpec(*SHAPE)
    threads: set[str] = set()
    plain = model.predict_on_batch

    def predict_on_batch(batch):
        threads.add(threading.current_thread().name)
        return plain(batch)

    model.predict_on_batch = predict_on_batch
    shards = list(_predict_here(work, spec, str(tmp_path / "drop"), model, SHAPE, config))

    decodable = [(sha256, path) for path, sha256, _ in work if not path.startswith(str(tmp_path / "drop/broken"))]
    assert [len(shard.sha256s) for shard in shards] == [4, 4, 3]
    assert [sha256 for shard in shards for sha256 in shard.sha256s] == [sha256 for sha256, _ in decodable]
    rejected = [sha256 for shard in shards for sha256, _ in shard.rejected]
    assert rejected == [sha256 for path, sha256, _ in work if "broken" in path]
    assert all(reason for shard in shards for _, reason in shard.rejected)  # Each rejection says why.
    images = np.stack(
        [pixels_to_array(decode_image(Path(path).read_bytes(), spec).pixels, spec) for _, path in decodable]
    )
    model.predict_on_batch = plain
    expected = predict_probabilities(model, images, config.batch_size)
    np.testing.assert_allclose(np.concatenate([shard.probabilities for shard in shards]), expected, atol=1e-6)
    np.testing.assert_array_equal(sum(shard.pixel_histogram for shard in shards), pixel_histogram(images, 3))
    # The model predicted on its own thread, leaving this one free for the rows and the next batch.
    assert threads and threading.current_thread().name not in threads


def test_a_prediction_that_fails_raises_its_error_to_the_caller_and_stops_the_predictor(model, tmp_path):
    work = _drop(tmp_path / "drop", 9)
    config = ScoreConfig(workers=1, files_per_chunk=2, batch_size=2, chunks_in_flight_per_worker=1)
    calls = []

    def failing(batch):
        calls.append(len(batch))
        raise ValueError("the model cannot take this batch")

    model.predict_on_batch = failing
    before = {thread.name for thread in threading.enumerate()}
    with pytest.raises(ValueError, match="cannot take this batch"):
        list(_predict_here(work, ImageSpec(*SHAPE), str(tmp_path / "drop"), model, SHAPE, config))
    # The failure surfaced at the first batch handed on: none beyond those already in flight was predicted.
    assert 1 <= len(calls) <= BATCHES_IN_FLIGHT
    left = {thread.name for thread in threading.enumerate()} - before
    assert not [name for name in left if name.startswith("visionflow-predict")]


def test_a_caller_that_stops_early_leaves_no_predictor_thread_behind(model, tmp_path):
    work = _drop(tmp_path / "drop", 12)
    config = ScoreConfig(workers=1, files_per_chunk=2, batch_size=2, chunks_in_flight_per_worker=1)
    shards = _predict_here(work, ImageSpec(*SHAPE), str(tmp_path / "drop"), model, SHAPE, config)
    first = next(shards)
    assert len(first.sha256s) == 2
    assert any(thread.name.startswith("visionflow-predict") for thread in threading.enumerate())
    shards.close()  # What predict_new_contents does when writing the rows fails.
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("visionflow-predict")]

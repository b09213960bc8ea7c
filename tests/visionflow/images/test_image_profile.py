"""Image profiles and the drift signal."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.images.image_profile import DriftConfig, ImageProfile, ProfileAccumulator, compare_profiles


def test_accumulated_statistics_match_numpy_over_all_batches():
    images = np.random.default_rng(0).integers(0, 255, size=(50, 4, 4, 3), dtype=np.uint8)
    accumulator = ProfileAccumulator(channels=3)
    for start in range(0, 50, 7):
        accumulator.add_images(images[start : start + 7])
    accumulator.add_classes(["cat"] * 30 + ["dog"] * 20)
    profile = accumulator.profile()
    flat = images.reshape(-1, 3).astype(np.float64)
    assert profile.images == 50
    assert profile.channel_mean == pytest.approx(flat.mean(axis=0), abs=1e-3)
    assert profile.channel_std == pytest.approx(flat.std(axis=0), abs=1e-3)
    assert profile.class_share == {"cat": 0.6, "dog": 0.4}


TRAINING = ImageProfile(images=1000, channel_mean=[120, 110, 100], channel_std=[60, 60, 60],
                        class_share={"cat": 0.5, "dog": 0.5})  # fmt: skip


def test_a_drop_like_the_training_data_is_not_drift():
    drop = ImageProfile(images=100, channel_mean=[125, 108, 101], channel_std=[58, 61, 59],
                        class_share={"cat": 0.45, "dog": 0.55})  # fmt: skip
    result = compare_profiles(TRAINING, drop, DriftConfig())
    assert result["drifted"] is False and result["reasons"] == []


def test_dark_images_of_one_class_are_drift_with_both_reasons():
    drop = ImageProfile(images=100, channel_mean=[20, 20, 20], channel_std=[10, 10, 10], class_share={"cat": 1.0})
    result = compare_profiles(TRAINING, drop, DriftConfig())
    assert result["drifted"] is True and result["mean_shift"] == pytest.approx(100 / 60, abs=1e-3)
    assert result["class_mix_distance"] == pytest.approx(0.5)
    assert len(result["reasons"]) == 2 and "brightness" in result["reasons"][0]


def test_too_few_images_give_no_verdict():
    drop = ImageProfile(images=3, channel_mean=[0, 0, 0], channel_std=[0, 0, 0], class_share={"cat": 1.0})
    result = compare_profiles(TRAINING, drop, DriftConfig(min_images=30))
    assert result["drifted"] is None and "only 3 images" in result["reasons"][0]


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_pixel_histogram_counts_every_value_of_every_channel(channels):
    from visionflow.images.image_profile import pixel_histogram

    images = np.random.default_rng(channels).integers(0, 256, size=(9, 5, 7, channels), dtype=np.uint8)
    images[0, 0, 0] = 255  # Both ends of the range are counted.
    images[0, 0, 1] = 0
    counts = pixel_histogram(images, channels)
    expected = [np.histogram(images[..., channel], bins=256, range=(0, 256))[0] for channel in range(channels)]
    assert counts.shape == (channels, 256)
    np.testing.assert_array_equal(counts, np.stack(expected))
    # A mirrored view (not contiguous in memory) holds the same values, so the same counts.
    np.testing.assert_array_equal(pixel_histogram(images[:, :, ::-1], channels), counts)
    assert pixel_histogram(images[:0], channels).sum() == 0 and pixel_histogram(images[:0], channels).shape == (
        channels,
        256,
    )

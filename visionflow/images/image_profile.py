"""Image statistics that describe a set of images, and how far two such descriptions lie apart.

A model records the profile of its training images when it is registered; scoring measures the
same profile on each drop as it streams through and compares the two. A drop whose pixels or
predicted classes look unlike the training data is flagged as drifted: the model may be seeing
images it was never taught (another camera, another kind of object, a broken upstream resize).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from visionflow.images.splits import load_split_arrays


class ImageProfile(BaseModel):
    """Summary statistics of a set of images of one shape."""

    images: int  # How many images the statistics cover.
    channel_mean: list[float]  # Mean pixel value per channel, 0 to 255.
    channel_std: list[float]  # Standard deviation of pixel values per channel, 0 to 255.
    class_share: dict[str, float]  # Share (0 to 1) of the images per class: true labels or predictions.


class DriftConfig(BaseModel):
    """When a drop counts as drifted from the training data."""

    # Largest shift of a channel's mean, in units of that channel's training standard deviation.
    max_mean_shift: float = Field(default=0.5, gt=0)
    # Largest total variation distance (0 to 1) between the training class mix and the predicted mix.
    max_class_mix_distance: float = Field(default=0.35, gt=0, le=1)
    min_images: int = Field(default=30, ge=1)  # Fewer images than this give no verdict: too few to judge.


class ProfileAccumulator:
    """Running per-channel histograms of pixel values, so a profile needs one batch in memory.

    A histogram of 256 counts per channel gives the exact mean and standard deviation, and
    counting (numpy.bincount) is several times faster than summing the pixels as floats.
    """

    def __init__(self, channels: int) -> None:
        self.images = 0
        self._histogram = np.zeros((channels, 256), dtype=np.int64)
        self._classes: dict[str, int] = {}

    def add_images(self, images: np.ndarray) -> None:
        """Add a uint8 batch (N, H, W, C)."""
        self.add_histogram(pixel_histogram(images, self._histogram.shape[0]), len(images))

    def add_histogram(self, histogram: np.ndarray, images: int) -> None:
        """Add the pixel_histogram of images counted elsewhere (a worker process, a Dask shard)."""
        self._histogram += histogram
        self.images += images

    def add_classes(self, class_names) -> None:
        """Count one class name per image (a true label, or a prediction)."""
        names, counts = np.unique(np.asarray(list(class_names), dtype=object).astype(str), return_counts=True)
        for name, count in zip(names, counts, strict=True):
            self._classes[str(name)] = self._classes.get(str(name), 0) + int(count)

    def class_counts(self) -> dict[str, int]:
        """How many images of each class were added, by class name."""
        return dict(sorted(self._classes.items()))

    def profile(self) -> ImageProfile:
        """The profile of everything added so far."""
        levels = np.arange(256, dtype=np.float64)
        count = np.maximum(self._histogram.sum(axis=1), 1)
        mean = (self._histogram * levels).sum(axis=1) / count
        variance = np.maximum((self._histogram * np.square(levels)).sum(axis=1) / count - np.square(mean), 0.0)
        labelled = sum(self._classes.values()) or 1
        return ImageProfile(
            images=self.images,
            channel_mean=[round(float(value), 3) for value in mean],
            channel_std=[round(float(value), 3) for value in np.sqrt(variance)],
            class_share={name: round(count / labelled, 5) for name, count in sorted(self._classes.items())},
        )


# Pillow modes whose histogram() counts 8-bit values per band, by number of channels.
_HISTOGRAM_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def pixel_histogram(images: np.ndarray, channels: int) -> np.ndarray:
    """Counts (channels x 256) of each pixel value per channel in a uint8 batch (N, H, W, C).

    Pillow counts the batch as one tall image in one pass of C over the bytes: 2.8x faster than a
    NumPy bincount per channel, which first widens every value to 64 bits (0.37 against 1.02 ms
    for 256 CIFAR-10 images, docs/BENCHMARKS.md). Other channel counts take the bincount.
    """
    if len(images) == 0:
        return np.zeros((channels, 256), dtype=np.int64)
    mode = _HISTOGRAM_MODES.get(channels)
    if mode is None:
        values = images.reshape(-1, channels)
        return np.stack([np.bincount(values[:, channel], minlength=256) for channel in range(channels)])
    count, height, width = images.shape[:3]
    tall = Image.frombuffer(mode, (width, count * height), np.ascontiguousarray(images), "raw", mode, 0, 1)
    return np.asarray(tall.histogram(), dtype=np.int64).reshape(channels, 256)


def profile_split(parquet_path: str | Path, chunk_images: int = 4096) -> ImageProfile:
    """The profile of a processed split file: its pixels and its true labels, chunk by chunk."""
    images, labels, metadata = load_split_arrays(parquet_path)
    classes = np.asarray(metadata.classes, dtype=object)
    accumulator = ProfileAccumulator(images.shape[-1])
    for start in range(0, len(images), chunk_images):
        accumulator.add_images(images[start : start + chunk_images])
    accumulator.add_classes(classes[labels])
    return accumulator.profile()


def compare_profiles(reference: ImageProfile, observed: ImageProfile, config: DriftConfig) -> dict:
    """How far observed (a drop) lies from reference (the training data), and whether that is drift.

    Returns mean_shift (the largest per-channel mean difference over the training standard
    deviation), class_mix_distance (total variation distance of the class shares), drifted
    (True, False, or None with too few images to judge) and reasons, one sentence per finding.
    """
    reference_std = np.maximum(np.asarray(reference.channel_std), 1.0)
    shifts = np.abs(np.asarray(observed.channel_mean) - np.asarray(reference.channel_mean)) / reference_std
    classes = set(reference.class_share) | set(observed.class_share)
    distance = 0.5 * sum(
        abs(reference.class_share.get(name, 0.0) - observed.class_share.get(name, 0.0)) for name in classes
    )
    result = {
        "mean_shift": round(float(shifts.max()) if shifts.size else 0.0, 4),
        "class_mix_distance": round(float(distance), 4),
        "images_profiled": observed.images,
        "drifted": None,
        "reasons": [],
    }
    if observed.images < config.min_images:
        result["reasons"].append(f"only {observed.images} images profiled; {config.min_images} needed to judge drift")
        return result
    if result["mean_shift"] > config.max_mean_shift:
        result["reasons"].append(
            f"pixel means moved {result['mean_shift']:.2f} training standard deviations "
            f"(limit {config.max_mean_shift}): brightness or colour differs from the training images"
        )
    if result["class_mix_distance"] > config.max_class_mix_distance:
        result["reasons"].append(
            f"predicted class mix is {result['class_mix_distance']:.2f} away from the training mix "
            f"(total variation, limit {config.max_class_mix_distance})"
        )
    result["drifted"] = bool(result["reasons"])
    return result

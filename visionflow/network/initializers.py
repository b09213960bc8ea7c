"""Data-dependent initialisation for the airbench network: a frozen patch-whitening first layer.

The idea comes from airbench, where it cut the epochs needed for a given accuracy more than any
other change: a first layer whose 2x2 filters whiten the training images' patches, frozen, so
every later layer sees decorrelated inputs from the first step. The kernel is set after the
layer is built, so a saved model holds a plain Conv2D kernel and loads in safe mode with no
custom code.
"""

from __future__ import annotations

import numpy as np

# Side in pixels of the square patches the whitening layer sees; airbench uses 2.
WHITENING_PATCH = 2
# Added to every eigenvalue before its inverse square root, so directions of almost no variance
# (flat patches) are not amplified without bound. Same units as the eigenvalues: squared
# normalised pixel values.
WHITENING_EPSILON = 5e-4
# Images whose patches estimate the covariance, taken evenly across the training split; 5,000
# CIFAR-10 images give a stable estimate.
WHITENING_SAMPLE_IMAGES = 5000
# Images normalised and turned into patches at once; bounds the float64 working memory to about
# 8 bytes x this x H x W x C x patch area.
WHITENING_CHUNK_IMAGES = 256


def whitening_filters(channels: int) -> int:
    """Output channels of the whitening layer: each eigenvector of the patch covariance, and its negative."""
    return 2 * WHITENING_PATCH * WHITENING_PATCH * channels


def normalized(images: np.ndarray, channel_stats: tuple[list[float], list[float]] | None) -> np.ndarray:
    """uint8 images as the model's normalisation layer sees them, in float64."""
    pixels = images.astype(np.float64)
    if channel_stats is None:
        return pixels / 255.0
    mean, variance = (np.asarray(values, dtype=np.float64) for values in channel_stats)
    return (pixels - mean) / np.sqrt(variance)


def patch_matrix(pixels: np.ndarray) -> np.ndarray:
    """Every 2x2 patch of (N, H, W, C) pixels as a row, in the (row, column, channel) order of a Conv2D kernel."""
    _count, height, width, channels = pixels.shape
    size = WHITENING_PATCH
    shifted = [
        pixels[:, row : height - size + 1 + row, column : width - size + 1 + column, :]
        for row in range(size)
        for column in range(size)
    ]
    return np.stack(shifted, axis=3).reshape(-1, size * size * channels)


def patch_whitening_kernel(images: np.ndarray, channel_stats: tuple[list[float], list[float]] | None) -> np.ndarray:
    """A (2, 2, C, 8C) Conv2D kernel that whitens the 2x2 patches of uint8 images (N, H, W, C).

    Each filter is an eigenvector of the patches' second-moment matrix divided by the square
    root of its eigenvalue, once with each sign, so a ReLU or GELU after the layer keeps both
    halves of every whitened direction. channel_stats is the per-channel mean and variance the
    model standardises with, or None when it rescales to [0, 1].
    """
    # Every k-th image, so the sample spans all classes even when the split is stored class by class.
    sample = images[:: max(1, len(images) // WHITENING_SAMPLE_IMAGES)][:WHITENING_SAMPLE_IMAGES]
    channels = images.shape[-1]
    dimension = WHITENING_PATCH * WHITENING_PATCH * channels
    second_moment = np.zeros((dimension, dimension))
    rows = 0
    for start in range(0, len(sample), WHITENING_CHUNK_IMAGES):
        patches = patch_matrix(normalized(sample[start : start + WHITENING_CHUNK_IMAGES], channel_stats))
        second_moment += patches.T @ patches
        rows += len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(second_moment / max(rows, 1))
    # Largest-variance directions first, so the filters read from coarse to fine.
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + WHITENING_EPSILON)
    kernel = np.concatenate([scaled, -scaled], axis=1)
    return kernel.reshape(WHITENING_PATCH, WHITENING_PATCH, channels, 2 * dimension).astype(np.float32)

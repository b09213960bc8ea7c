"""How far a bfloat16 training step's result may lie from the exact value of the same operands.

The training-only layers are held to what their arithmetic allows on any machine, not to how
close Keras' own kernels came on one:
- a bfloat16 result is its float32 value rounded once: bfloat16 keeps 8 bits of mantissa, so that
  costs 2^-8 of the result where a kernel rounds to nearest, 2^-7 where it truncates (TensorFlow's
  CPU matrix product without oneDNN does);
- a float32 sum of n terms is within about n * 2^-24 (24 bits of mantissa) of the sum of its
  terms' absolute values, in whatever order a kernel adds them; where terms cancel, that sum (a
  result's "condition") is far larger than the result, so the bound is relative to it.
Keras' Conv2D weight gradient is no such reference: on a CPU without oneDNN's bfloat16 kernels
(AVX2 only) TensorFlow keeps its partial sums in bfloat16, one rounding per block of the
reduction, and the blocks follow the cache and the number of threads.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BFLOAT16_ROUNDING = 2.0**-7
FLOAT32_UNIT = 2.0**-24


def within_rounding(exact: np.ndarray, condition: np.ndarray, float32_terms: int, rounding: float) -> np.ndarray:
    """The bound on a result's error: its float32 sums over float32_terms terms, then its own final rounding.

    n roundings of 2^-24 compound to at most n * 2^-24 / (1 - n * 2^-24), not quite n * 2^-24."""
    sums = float32_terms * FLOAT32_UNIT
    float32_error = sums / (1 - sums) * condition
    return rounding * np.abs(exact) + (1 + rounding) * float32_error


def assert_within(computed, exact: np.ndarray, bound: np.ndarray, what: str) -> None:
    """Every entry of computed is within bound of exact."""
    error = np.abs(as_float64(computed) - exact)
    assert (error <= bound).all(), f"{what}: off by {np.max(error / np.maximum(bound, 1e-30)):.3g} times its bound"


def as_float64(tensor) -> np.ndarray:
    return np.asarray(tf.cast(tensor, tf.float64))


def kernel_gradient_exact(inputs, output_gradient, kernel_shape) -> tuple[np.ndarray, np.ndarray]:
    """A stride-1 "same" conv's weight gradient in float64 (exact for bfloat16 operands), and its condition."""

    def backprop_filter(images, gradient):
        return tf.raw_ops.Conv2DBackpropFilter(
            input=images, filter_sizes=list(kernel_shape), out_backprop=gradient, strides=[1, 1, 1, 1], padding="SAME"
        ).numpy()

    images, gradient = as_float64(inputs), as_float64(output_gradient)
    with tf.device("/CPU:0"):
        return backprop_filter(images, gradient), backprop_filter(np.abs(images), np.abs(gradient))


def assert_kernel_gradient_within_rounding(computed, inputs, output_gradient, what: str) -> None:
    """computed, a bfloat16 conv weight gradient, is one float32 sum per entry over every pixel of the batch,
    rounded once."""
    exact, condition = kernel_gradient_exact(inputs, output_gradient, computed.shape)
    terms = int(np.prod(inputs.shape[:3]))
    assert_within(computed, exact, within_rounding(exact, condition, terms, BFLOAT16_ROUNDING), what)

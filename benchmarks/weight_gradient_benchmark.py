"""The gradient of a convolution's weights: oneDNN's kernel against matrix products of shifted inputs.

The step profile (benchmarks/step_profile.py) found that the weight gradients take over half of
`default`'s training step and run at a third of the forward pass's rate. The same numbers can be
had another way: for each position of the 3x3 kernel, the layer's input shifted by it (a row per
pixel of every image) times the gradient of its output, a matrix product whose reduction runs over
the batch and every pixel; visionflow/network/patch_gradient_conv.py trains with it where it is faster.
This times both ways, for every trainable 3x3 convolution of each side's network at its real input
shape, in the network's compute precision, alternating the two ways within each round, and checks
that they agree.

    .venv/bin/python benchmarks/weight_gradient_benchmark.py [--presets default] [--batch 128] [--repeats 20] \
        [--variant NAME PRESET '{"model": {...}, "train": {...}}' ...]

Prints a markdown table and, last, a JSON object (the machine, the date, the results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops_benchmark import training_step_on_random_images  # noqa: E402
from load_benchmark import machine  # noqa: E402
from sides import add_side_arguments, requested_sides  # noqa: E402

ROUNDS = 3  # Rounds of both ways in turn; the fastest round of each counts.


def convolution_shapes(preset, batch: int) -> list[dict]:
    """Name, input shape and kernel shape of every trainable 3x3 Conv2D of the preset's network."""
    import keras

    model, _dataset = training_step_on_random_images(preset, batch)
    shapes = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.trainable and tuple(layer.kernel.shape[:2]) == (3, 3):
            shapes.append(
                {"layer": layer.name, "input": tuple(layer.input.shape[1:]), "kernel": tuple(layer.kernel.shape)}
            )
    return shapes


def time_both_ways(shape: dict, batch: int, repeats: int, dtype: str) -> dict:
    """Milliseconds per weight gradient of oneDNN's kernel and of the patch product, and their agreement."""
    import tensorflow as tf

    from visionflow.network.patch_gradient_conv import patch_weight_gradient

    height, width, channels = shape["input"]
    kernel_side, _, _, filters = shape["kernel"]
    generator = np.random.default_rng(0)
    images = tf.constant(generator.standard_normal((batch, height, width, channels)), dtype)
    output_gradient = tf.constant(generator.standard_normal((batch, height, width, filters)), dtype)

    @tf.function
    def kernel_way():
        return tf.raw_ops.Conv2DBackpropFilter(
            input=images,
            filter_sizes=list(shape["kernel"]),
            out_backprop=output_gradient,
            strides=[1, 1, 1, 1],
            padding="SAME",
        )

    @tf.function
    def patch_way():
        return patch_weight_gradient(images, output_gradient, shape["kernel"])

    reference = kernel_way().numpy().astype(np.float64)
    difference = np.abs(patch_way().numpy().astype(np.float64) - reference).max() / np.abs(reference).max()
    milliseconds: dict[str, list[float]] = {"kernel": [], "patches": []}
    for _ in range(ROUNDS):
        for way, function in (("kernel", kernel_way), ("patches", patch_way)):
            started = time.perf_counter()
            for _ in range(repeats):
                result = function()
            result.numpy()
            milliseconds[way].append((time.perf_counter() - started) / repeats * 1000)
    gigaflop = 2 * batch * height * width * filters * kernel_side * kernel_side * channels / 1e9
    fastest = {way: min(times) for way, times in milliseconds.items()}
    return {
        **shape,
        "kernel_ms": round(fastest["kernel"], 2),
        "patches_ms": round(fastest["patches"], 2),
        "kernel_gflops": round(gigaflop / fastest["kernel"] * 1000),
        "patches_gflops": round(gigaflop / fastest["patches"] * 1000),
        "speedup": round(fastest["kernel"] / fastest["patches"], 2),
        "largest_relative_difference": float(f"{difference:.2g}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_side_arguments(parser, default_presets=["default"])
    parser.add_argument("--batch", type=int, default=128, help="images per gradient, the training batch")
    parser.add_argument("--repeats", type=int, default=20, help="gradients timed per way and round")
    arguments = parser.parse_args()
    if arguments.batch < 1 or arguments.repeats < 1:
        parser.error("--batch and --repeats must be at least 1")
    sides = requested_sides(parser, arguments)
    from visionflow.home import configure_environment

    configure_environment()
    from visionflow.network.build_model import resolve_precision

    results = []
    for name, preset in sides:
        dtype = "bfloat16" if resolve_precision(preset.model) == "mixed_bfloat16" else "float32"
        for shape in convolution_shapes(preset, arguments.batch):
            results.append(
                {"side": name, "dtype": dtype, **time_both_ways(shape, arguments.batch, arguments.repeats, dtype)}
            )
    print("| side | layer | input | filters | oneDNN kernel ms (GFLOP/s) | patch product ms (GFLOP/s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['side']} | {row['layer']} | {'x'.join(map(str, row['input']))} | {row['kernel'][3]} | "
              f"{row['kernel_ms']} ({row['kernel_gflops']}) | {row['patches_ms']} ({row['patches_gflops']}) | "
              f"{row['speedup']}x |")  # fmt: skip
    print(
        json.dumps(
            {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "batch": arguments.batch, "results": results}
        )
    )


if __name__ == "__main__":
    main()

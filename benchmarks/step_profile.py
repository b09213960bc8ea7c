"""Where a preset's training step spends its time: TensorFlow's profiler, op by op.

Each preset's real training step (its model, optimizer, loss and tf.data pipeline, as `visionflow
train` builds them) runs on random CIFAR-shaped images: one epoch to trace it, one timed, one
under TensorFlow's profiler. The profile's events on the host's threads are summed per op type,
and per convolution split into the forward pass, the gradient of the weights and the gradient of
the input, each with its achieved GFLOP/s (a multiply-add counts 2; the two gradients cost as
much arithmetic as the forward pass each). Ops can overlap on the two inter-op threads, so the
per-op seconds can add up to more than the step's wall time. A conv whose weight gradient runs as
matrix products of shifted inputs (visionflow/network/patch_gradient_conv.py) has no weight-gradient row:
those products are counted under MatMul, StridedSlice and Pad in the op-type table; a side with
`{"model": {"patch_weight_gradient": false}}` shows oneDNN's kernel in their place.

    .venv/bin/python benchmarks/step_profile.py --presets default [--precision float32] [--steps 40]

Prints a markdown table per preset and, last, a JSON object (the machine, the date, the results).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops_benchmark import training_step_on_random_images  # noqa: E402
from load_benchmark import machine  # noqa: E402
from sides import add_side_arguments, changed_preset, requested_sides  # noqa: E402

# The profiler names an op's event "scope/of/the/op:OpType". oneDNN's convolution kernels carry
# these in their op type, fused with a bias or an activation or not (_MklNativeFusedConv2D,
# _MklNativeConv2DBackpropFilterWithBias, ...); the first that matches names the pass.
CONVOLUTION_PASSES = (
    ("Conv2DBackpropFilter", "weight gradient"),
    ("Conv2DBackpropInput", "input gradient"),
    ("Conv2D", "forward"),
)
# Events that wrap others (the executor, the traced function) rather than doing work of their own.
WRAPPERS = ("Process", "Run", "__inference")


def host_op_seconds(log_dir: Path) -> collections.Counter:
    """Seconds per profiled event name, summed over the host's threads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(next(log_dir.rglob("*.xplane.pb")).read_bytes())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                seconds[plane.event_metadata[event.metadata_id].name] += event.duration_ps / 1e12
    return seconds


def convolution_flops(model) -> dict[str, float]:
    """Forward multiply-add FLOPs per image of every Conv2D layer, by layer name."""
    import keras

    flops = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _batch, height, width, filters = layer.output.shape
            kernel_height, kernel_width, inputs, _ = layer.kernel.shape
            flops[layer.name] = 2.0 * height * width * filters * kernel_height * kernel_width * inputs
    return flops


def profile_preset(name: str, preset, precision: str | None, steps: int) -> dict:
    """Profile one epoch of `steps` training steps of the preset and summarise it."""
    import tensorflow as tf

    from visionflow.network.build_model import resolve_precision

    if precision:
        preset = changed_preset(preset, {"model": {"precision": precision}})
    images_count = preset.train.batch_size * steps
    model, data = training_step_on_random_images(preset, images_count)
    model.fit(data, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    images_per_second = images_count / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as log_dir:
        tf.profiler.experimental.start(log_dir)
        started = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        profiled_seconds = time.perf_counter() - started
        tf.profiler.experimental.stop()
        seconds = host_op_seconds(Path(log_dir))
    by_type: collections.Counter = collections.Counter()
    convolutions: dict[str, dict[str, float]] = collections.defaultdict(dict)
    layer_flops = convolution_flops(model)
    for event_name, spent in seconds.items():
        if ":" not in event_name:
            continue
        scope, op_type = event_name.rsplit(":", 1)
        op_type = op_type.strip()
        if op_type.startswith(WRAPPERS):
            continue
        by_type[op_type] += spent
        kind = next((kind for marker, kind in CONVOLUTION_PASSES if marker in op_type), None)
        layer = next((layer for layer in layer_flops if f"/{layer}" in scope), None)
        if kind and layer:
            convolutions[layer][kind] = convolutions[layer].get(kind, 0.0) + spent
    rows = []
    for layer in (layer for layer in layer_flops if layer in convolutions):
        passes = convolutions[layer]
        total_flops = layer_flops[layer] * images_count
        rows.append(
            {
                "layer": layer,
                "forward_mflop_per_image": round(layer_flops[layer] / 1e6, 2),
                # Five places: a small network's pass over a few steps can take under a millisecond.
                **{f"{kind} seconds": round(spent, 5) for kind, spent in passes.items()},
                **{f"{kind} GFLOP/s": round(total_flops / spent / 1e9) for kind, spent in passes.items() if spent},
            }
        )
    return {
        "preset": name,
        "precision": resolve_precision(preset.model),
        "steps": steps,
        "images_per_second": round(images_per_second),
        "profiled_epoch_seconds": round(profiled_seconds, 2),
        "seconds_by_op_type": {op: round(spent, 3) for op, spent in by_type.most_common(12)},
        "convolutions": rows,
    }


def print_tables(result: dict) -> None:
    print(f"\n{result['preset']} ({result['precision']}): {result['images_per_second']} images/s unprofiled")
    print("| conv layer | forward MFLOP/image | pass | seconds | GFLOP/s |")
    print("|---|---|---|---|---|")
    for row in result["convolutions"]:
        for kind in ("forward", "weight gradient", "input gradient"):
            if f"{kind} seconds" in row:
                print(
                    f"| {row['layer']} | {row['forward_mflop_per_image']} | {kind} | "
                    f"{row[f'{kind} seconds']} | {row.get(f'{kind} GFLOP/s', '')} |"
                )
    print("| op type | seconds |")
    print("|---|---|")
    for op, spent in result["seconds_by_op_type"].items():
        print(f"| {op} | {spent} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_side_arguments(parser, default_presets=["default"])
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16"], help="override the preset's")
    parser.add_argument("--steps", type=int, default=40, help="training steps per epoch")
    arguments = parser.parse_args()
    if arguments.steps < 1:
        parser.error("--steps must be at least 1")
    sides = requested_sides(parser, arguments)
    from visionflow.home import configure_environment

    configure_environment()
    results = [profile_preset(name, preset, arguments.precision, arguments.steps) for name, preset in sides]
    for result in results:
        print_tables(result)
    print(json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "results": results}))


if __name__ == "__main__":
    main()

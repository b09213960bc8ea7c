"""Achieved training GFLOP/s of each preset against this CPU's peak.

For each preset: the forward pass's floating-point operations per image, counted by TensorFlow's
profiler on the frozen inference graph (a multiply-add counts 2); a training step costs about 3x
the forward pass (forward, and the gradients of activations and of weights). Then the preset's
real training step (its model, optimizer, loss and tf.data pipeline, as `visionflow train` builds
them) runs on random CIFAR-shaped images for a few epochs; the fastest epoch after the first
(which traces the step) gives images/s, and that times 3x the forward FLOPs is the achieved rate.

The peak is cores x clock x FLOPs per cycle per core, from /proc/cpuinfo: fp32 with two fused
multiply-add pipes of the widest vector the CPU executes at full rate (256 bits on AMD Zen 4, whose
AVX-512 runs as two halves; 512 bits on Intel with AVX-512), bf16 twice that where AVX512_BF16 is
present, and Intel's AMX tiles where present (1,024 bf16 FLOPs per cycle per core). The clock is
the one /proc/cpuinfo reports, often the base clock: a CPU boosting above it has a higher peak.

    .venv/bin/python benchmarks/flops_benchmark.py --presets seed default --images 8192 --epochs 4 [--xla] \
        [--variant NAME PRESET '{"model": {...}, "train": {...}}' ...] [--threads 0,0 1,2 ...]

A variant is a preset with some settings changed (the batch size, the precision). --threads
measures every side under each setting of TensorFlow's thread pools, INTER,INTRA (inter-op and
intra-op threads; 0 lets TensorFlow choose), each in a fresh process because TensorFlow fixes its
pools when it starts. Prints a markdown table and, last, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_benchmark import machine  # noqa: E402
from sides import add_side_arguments, requested_sides  # noqa: E402

SHAPE = (32, 32, 3)
CLASSES = 10


def peak_gflops() -> dict:
    """This CPU's peak GFLOP/s, fp32 and bf16, with the assumptions behind them."""
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("vendor_id")), "")
    mhz = float(next(line.split(":", 1)[1] for line in text.splitlines() if line.startswith("cpu MHz")))
    cores = len(os.sched_getaffinity(0))
    wide = "avx512f" in flags and vendor != "AuthenticAMD"  # Zen 4 runs 512-bit work as two 256-bit halves.
    fp32_per_cycle = 2 * 2 * (16 if wide else 8)  # Two FMA pipes, 2 FLOPs per lane.
    bf16_per_cycle = 1024 if "amx_bf16" in flags else fp32_per_cycle * (2 if "avx512_bf16" in flags else 1)
    ghz = mhz / 1000
    return {
        "cores": cores,
        "ghz": round(ghz, 3),
        "fp32_flops_per_cycle_per_core": fp32_per_cycle,
        "bf16_flops_per_cycle_per_core": bf16_per_cycle,
        "fp32_gflops": round(cores * ghz * fp32_per_cycle, 1),
        "bf16_gflops": round(cores * ghz * bf16_per_cycle, 1),
    }


def forward_flops(model) -> int:
    """Floating-point operations of one image's forward pass, from the frozen inference graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda images: model(images, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, *SHAPE], tf.uint8))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def training_step_on_random_images(preset, images: int):
    """The preset's model, compiled as `visionflow train` compiles it, and its training dataset
    of `images` random CIFAR-shaped images: its real training step, without the data."""
    from visionflow.tasks.train.recipe.distribution import training_strategy
    from visionflow.tasks.train.recipe.fit import compiled_model, make_dataset

    generator = np.random.default_rng(0)
    train_images = generator.integers(0, 256, size=(images, *SHAPE), dtype=np.uint8)
    labels = generator.integers(0, CLASSES, size=images).astype(np.int64)
    steps = -(-images // preset.train.batch_size)
    model = compiled_model(preset, train_images, CLASSES, steps, training_strategy("none"))
    return model, make_dataset(train_images, labels, preset.train, CLASSES, training=True)


def measure(name: str, preset, images: int, epochs: int, jit_compile: bool = False) -> dict:
    """The preset's training rate on random images: images/s of its fastest epoch after the first, and GFLOP/s."""
    import keras

    from visionflow.network.build_model import resolve_precision
    from visionflow.tasks.train.train_model import QUIET

    config = preset.train
    model, dataset = training_step_on_random_images(preset, images)
    flops = forward_flops(model)
    model.jit_compile = jit_compile  # XLA: Keras leaves it off on this CPU unless asked.
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(dataset, epochs=1, **QUIET)
        seconds.append(time.perf_counter() - started)
    rate = images / min(seconds[1:] or seconds)  # The fastest epoch after the first (tracing, warm-up).
    keras.backend.clear_session()
    return {
        "preset": name,
        "precision": resolve_precision(preset.model),
        "xla": jit_compile,
        "batch_size": config.batch_size,
        "forward_mflops_per_image": round(flops / 1e6, 2),
        "epoch_seconds": [round(value, 2) for value in seconds],
        "images_per_second": round(rate, 1),
        "training_gflops": round(3 * flops * rate / 1e9, 1),
    }


def parse_threads(parser: argparse.ArgumentParser, settings: list[str]) -> list[tuple[int, int]]:
    """INTER,INTRA strings as pairs of thread counts; a malformed one ends the run with one line."""
    pairs = []
    for setting in settings:
        try:
            inter, intra = (int(part) for part in setting.split(","))
        except ValueError:
            parser.error(f"--threads {setting!r}: write INTER,INTRA, two whole numbers such as 1,2 (0: TF chooses)")
        if inter < 0 or intra < 0:
            parser.error(f"--threads {setting!r}: thread counts cannot be negative")
        pairs.append((inter, intra))
    return pairs


def measure_in_child(threads: tuple[int, int]) -> list[dict]:
    """This benchmark's results for every side, run again in a fresh process with these thread pools."""
    arguments = list(sys.argv[1:])
    if "--threads" in arguments:
        start = arguments.index("--threads")
        end = start + 1
        while end < len(arguments) and not arguments[end].startswith("--"):
            end += 1
        del arguments[start:end]
    command = [sys.executable, __file__, *arguments, "--thread-pools", f"{threads[0]},{threads[1]}"]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])["results"]


def measure_here(sides, arguments, thread_pools: tuple[int, int] | None) -> list[dict]:
    """Every side's results in this process, after setting its thread pools when asked."""
    if thread_pools is not None:
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(thread_pools[0])
        tf.config.threading.set_intra_op_parallelism_threads(thread_pools[1])
    results = []
    for name, preset in sides:
        for jit_compile in (False, True) if arguments.xla else (False,):
            result = measure(name, preset, arguments.images, arguments.epochs, jit_compile)
            if thread_pools is not None:
                result["threads"] = f"{thread_pools[0]},{thread_pools[1]}"
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_side_arguments(parser, default_presets=["seed", "default"])
    parser.add_argument("--images", type=int, default=8192, help="random training images per epoch")
    parser.add_argument("--xla", action="store_true", help="also measure each preset with XLA, alternating")
    parser.add_argument("--epochs", type=int, default=4, help="epochs timed; the fastest after the first counts")
    parser.add_argument(
        "--threads", nargs="+", default=[], metavar="INTER,INTRA", help="thread pools to measure under, in turn"
    )
    parser.add_argument("--thread-pools", help=argparse.SUPPRESS)  # One --threads setting, in a child process.
    arguments = parser.parse_args()
    sides = requested_sides(parser, arguments)
    if arguments.thread_pools:
        pools = parse_threads(parser, [arguments.thread_pools])[0]
        print(json.dumps({"results": measure_here(sides, arguments, pools)}))
        return
    peak = peak_gflops()
    if arguments.threads:
        results = [result for pools in parse_threads(parser, arguments.threads) for result in measure_in_child(pools)]
    else:
        results = measure_here(sides, arguments, None)
    print("| side | threads | precision | batch | XLA | forward MFLOP/image | images/s | training GFLOP/s "
          "| of fp32 peak | of bf16 peak |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        achieved = result["training_gflops"]
        print(f"| {result['preset']} | {result.get('threads', 'default')} | {result['precision']} | "
              f"{result['batch_size']} | {result['xla']} | {result['forward_mflops_per_image']} | "
              f"{result['images_per_second']} | {achieved} | {achieved / peak['fp32_gflops']:.1%} | "
              f"{achieved / peak['bf16_gflops']:.1%} |")  # fmt: skip
    print(json.dumps({"machine": machine(), "peak": peak, "date": time.strftime("%Y-%m-%d"), "results": results}))


if __name__ == "__main__":
    main()

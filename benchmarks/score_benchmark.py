"""Scoring benchmark: visionflow's score flow against the model's own predict, and a naive loader.

Three sides score the same image folder with the same registered model, in one run, alternating:

1. ceiling: the model's predict on images already decoded into one NumPy array (decoding not timed);
2. visionflow: the whole score flow, run as a Prefect flow run against an already running server
   (list and hash, decode in worker processes while predicting, ledger, Parquet, the predictions
   contract, the report), each repetition in a fresh VISIONFLOW_HOME so nothing was scored before;
3. naive: keras.utils.image_dataset_from_directory + model.predict, the usual Keras recipe.

    .venv/bin/python benchmarks/score_benchmark.py --models-home HOME --model v0001 \\
        --drop ../shared/datasets/cifar10/test --repeats 2 [--memory-drops DROP_SMALL DROP_LARGE] [--engine ENGINE]

HOME is a VISIONFLOW_HOME holding a trained model (`visionflow train --data cifar10 ...`). With
--memory-drops, each drop is also scored by a fresh process running the score flow, which reports
its own peak resident memory, to show that memory does not grow with the number of images.
--engine is the engine the score flow predicts with (its own default, auto, when not given).
Prints a markdown table and, last, a JSON object.

With --command-engines (say `auto keras`), only the whole command is measured instead:
`visionflow score DROP --model V --engine E --json` in a fresh process and a fresh VISIONFLOW_HOME
per repetition (the registry copied, nothing scored yet; the Prefect database made once before,
as on any machine past its first command), the engines alternating. Per run: wall seconds, the
summary's seconds, scoring_seconds and rate, the engine, the command process's peak resident
memory (VmHWM, sampled from /proc), each role's, and the largest process of the tree (the kernel's
ru_maxrss of the command and its reaped descendants, what /usr/bin/time -v reports). --out writes
the JSON there too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH_SIZE = 256  # Images per predict call, the same on every side.


def scratch_home(models_home: Path, version: str, target: Path) -> Path:
    """A new VISIONFLOW_HOME holding only the model version (as champion): nothing scored yet."""
    (target / "models").mkdir(parents=True)
    shutil.copytree(models_home / "models" / version, target / "models" / version)
    from visionflow.models.champion_pointer import write_champion

    write_champion(target / "models", version)
    return target


def preload(drop: Path, shape: tuple[int, int, int]):
    """Every image under drop decoded by visionflow's decode path into one uint8 array."""
    import numpy as np

    from visionflow.images.imaging import ImageSpec, decode_image, pixels_to_array

    spec = ImageSpec(*shape)
    paths = sorted(path for path in drop.rglob("*") if path.is_file())
    return np.stack([pixels_to_array(decode_image(path.read_bytes(), spec).pixels, spec) for path in paths])


def naive_predict(model, drop: Path, shape: tuple[int, int, int]) -> int:
    """image_dataset_from_directory + predict: the recipe most Keras examples show."""
    import keras

    dataset = keras.utils.image_dataset_from_directory(
        drop, labels=None, image_size=shape[:2], batch_size=BATCH_SIZE, shuffle=False,
        color_mode="rgb" if shape[2] == 3 else "grayscale", verbose=False,
    )  # fmt: skip
    return len(model.predict(dataset, verbose=0))


def scoring_config(engine: str | None):
    """The score flow's settings with the engine asked for, else its defaults."""
    from visionflow.flows.score import ScoringConfig

    return ScoringConfig.model_validate({"score": {"engine": engine}} if engine else {})


def memory_run(drop: Path, home: Path, model: str, engine: str | None) -> None:
    """Child process: score drop with the score flow, print the peak resident memory (MiB) as JSON."""
    from visionflow.home import configure_environment

    configure_environment(home)
    from visionflow.flows.score import score_flow

    # Heartbeats on: the served case.
    summary = score_flow(drop=str(drop), model=model, config=scoring_config(engine), home=str(home))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"scored": summary.scored, "peak_mib": round(peak_mib, 1), "seconds": summary.seconds}))


def measure_memory(drops: list[Path], models_home: Path, version: str, scratch: Path, engine: str | None) -> list[dict]:
    results = []
    for index, drop in enumerate(drops):
        home = scratch_home(models_home, version, scratch / f"memory-{index}")
        command = [sys.executable, __file__, "--memory-run", str(drop), "--models-home", str(home), "--model", version]
        command += ["--engine", engine] if engine else []
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append({"drop": str(drop), **json.loads(completed.stdout.strip().splitlines()[-1])})
    return results


# What a home keeps from one command to the next that is not scoring's: the Prefect database and GX's context.
KEPT_BETWEEN_COMMANDS = ("prefect", "gx")


def score_command(drop: Path, home: Path, model: str, engine: str) -> dict:
    """`visionflow score` in a fresh process: wall seconds, its JSON summary, and peak memory in MiB."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from process_memory import ProcessMemory

    environment = {**os.environ, "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_API_URL", None)  # The command's own temporary server, as on a laptop.
    command = [sys.executable, "-m", "visionflow", "score", str(drop), "--model", model, "--engine", engine, "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    memory = ProcessMemory(process.pid)
    memory.start()
    output = process.stdout.read()
    # wait4, as /usr/bin/time does: ru_maxrss is the largest resident set of the command or any
    # descendant it reaped, in KiB.
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}: {output[-2000:]}")
    summary = json.loads(output.strip().splitlines()[-1])
    roles = memory.peaks()
    command_peak = roles.pop("visionflow score", {}).get("largest_peak_mib")
    largest_child = max(roles.items(), key=lambda item: item[1]["largest_peak_mib"], default=(None, {}))
    return {"engine_asked": engine, "engine": summary["engine"], "wall_seconds": round(seconds, 2),
            "seconds": summary["seconds"], "scoring_seconds": summary["scoring_seconds"],
            "scoring_images_per_second": summary["scoring_images_per_second"], "scored": summary["scored"],
            "command_peak_mib": command_peak, "largest_child": largest_child[0],
            "largest_child_peak_mib": largest_child[1].get("largest_peak_mib"),
            "largest_process_mib": round(usage.ru_maxrss / 1024, 1), "peaks_by_role_mib": roles}  # fmt: skip


def compare_commands(arguments: argparse.Namespace) -> None:
    """The whole `visionflow score` command on each of arguments.command_engines, alternating."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load_benchmark import machine

    from visionflow.models.registry import find_model

    version = find_model(arguments.models_home / "models", arguments.model).version
    scratch = Path(tempfile.mkdtemp(prefix="visionflow-score-command-"))
    try:
        # A home that has run each engine once on one image: its Prefect database and GX context exist.
        template = scratch_home(arguments.models_home, version, scratch / "template")
        first = next(path for path in sorted(arguments.drop.rglob("*")) if path.is_file())
        (scratch / "first-drop").mkdir()
        shutil.copy(first, scratch / "first-drop" / first.name)
        for engine in arguments.command_engines:
            score_command(scratch / "first-drop", template, version, engine)
        runs = []
        for repeat in range(arguments.repeats):
            order = arguments.command_engines if repeat % 2 == 0 else list(reversed(arguments.command_engines))
            for engine in order:
                home = scratch_home(arguments.models_home, version, scratch / f"{engine}-{repeat}")
                for folder in KEPT_BETWEEN_COMMANDS:
                    if (template / folder).exists():
                        shutil.copytree(template / folder, home / folder)
                runs.append(score_command(arguments.drop.resolve(), home, version, engine) | {"repeat": repeat})
                print(json.dumps(runs[-1]), file=sys.stderr)
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    fields = ("wall_seconds", "seconds", "scoring_seconds", "scoring_images_per_second", "command_peak_mib",
              "largest_child_peak_mib", "largest_process_mib")  # fmt: skip
    medians = {
        engine: {
            field: statistics.median(run[field] for run in runs if run["engine_asked"] == engine) for field in fields
        }
        for engine in arguments.command_engines
    }
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv),
              "model_version": version, "drop": str(arguments.drop), "runs": runs, "medians": medians}  # fmt: skip
    print("| engine asked | engine | wall s | flow s | scoring s | scoring images/s | command peak MiB | "
          "largest child peak MiB | largest process MiB (ru_maxrss) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for engine, median in medians.items():
        used = next(run["engine"] for run in runs if run["engine_asked"] == engine)
        print(f"| {engine} | {used} | " + " | ".join(f"{median[field]:,.1f}" for field in fields) + " |")
    print(json.dumps(result))
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-home", type=Path, default=Path("visionflow-home"))
    parser.add_argument("--model", default="champion")
    parser.add_argument("--drop", type=Path, default=Path("../shared/datasets/cifar10/test"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-drops", type=Path, nargs=2, default=None)
    parser.add_argument("--engine", default=None, help="the score flow's engine (default: the flow's own, auto)")
    parser.add_argument(
        "--command-engines", nargs="+", default=None, help="measure only the `visionflow score` command, these engines"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON object here")
    parser.add_argument("--memory-run", type=Path, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_run:
        memory_run(arguments.memory_run, arguments.models_home, arguments.model, arguments.engine)
        return
    if arguments.command_engines:
        compare_commands(arguments)
        return

    scratch = Path(tempfile.mkdtemp(prefix="visionflow-score-bench-"))
    from visionflow.home import configure_environment

    configure_environment(scratch / "warm-up")
    import logging

    logging.getLogger("prefect").setLevel(logging.WARNING)
    from prefect import flow

    @flow(name="benchmark-warm-up")
    def warm_up() -> None:
        """Starts Prefect's server so that flow timings do not include it, as in `visionflow serve`."""

    warm_up()
    import great_expectations  # noqa: F401  (a long-running service has it imported already)
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from visionflow.flows.score import score_flow
    from visionflow.models.prediction import predict_probabilities
    from visionflow.models.registry import find_model, load_checked_model

    record = find_model(arguments.models_home / "models", arguments.model)
    model = load_checked_model(record)
    images = preload(arguments.drop, record.input_shape)
    count = len(images)
    predict_probabilities(model, images[:BATCH_SIZE], BATCH_SIZE)  # Builds the predict function once.

    times: dict[str, list[float]] = {"ceiling": [], "visionflow": [], "visionflow_with_heartbeats": [], "naive": []}
    stage_seconds: list[float] = []
    for repeat in range(arguments.repeats):
        started = time.perf_counter()
        predict_probabilities(model, images, BATCH_SIZE)
        times["ceiling"].append(time.perf_counter() - started)

        home = scratch_home(arguments.models_home, record.version, scratch / f"home-{repeat}")
        started = time.perf_counter()
        # As `visionflow score` runs it: in this process, without flow-run heartbeats.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            summary = score_flow(
                drop=str(arguments.drop), model=record.version, config=scoring_config(arguments.engine), home=str(home)
            )
        times["visionflow"].append(time.perf_counter() - started)
        assert summary.scored == count, summary
        stage_seconds.append(json.loads(Path(summary.report_path).read_text())["seconds"])

        # As a served deployment runs it: with Prefect's default heartbeats (every 180 s).
        home = scratch_home(arguments.models_home, record.version, scratch / f"home-served-{repeat}")
        started = time.perf_counter()
        score_flow(
            drop=str(arguments.drop), model=record.version, config=scoring_config(arguments.engine), home=str(home)
        )
        times["visionflow_with_heartbeats"].append(time.perf_counter() - started)

        started = time.perf_counter()
        assert naive_predict(model, arguments.drop, record.input_shape) == count
        times["naive"].append(time.perf_counter() - started)

    median = {side: statistics.median(values) for side, values in times.items()}
    result = {
        "images": count,
        "model_version": record.version,
        "engine": summary.engine,
        "seconds": {side: [round(value, 2) for value in values] for side, values in times.items()},
        "visionflow_vs_ceiling": round(median["ceiling"] / median["visionflow"], 3),
        "visionflow_vs_naive": round(median["naive"] / median["visionflow"], 3),
        "scoring_stage_seconds": [round(value, 2) for value in stage_seconds],
        "scoring_stage_vs_ceiling": round(median["ceiling"] / statistics.median(stage_seconds), 3),
    }
    if arguments.memory_drops:
        result["memory"] = measure_memory(
            arguments.memory_drops, arguments.models_home, record.version, scratch, arguments.engine
        )
        result["memory_ratio"] = round(result["memory"][1]["peak_mib"] / result["memory"][0]["peak_mib"], 3)
    shutil.rmtree(scratch, ignore_errors=True)

    print("| side | seconds (median) | images/s | visionflow's speed relative to it |")
    print("|---|---|---|---|")
    labels = {
        "ceiling": "model predict on preloaded arrays (decoding not timed)",
        "visionflow": "visionflow score flow, end to end (as the CLI runs it)",
        "visionflow_with_heartbeats": "the same with flow-run heartbeats (as a served deployment runs it)",
        "naive": "image_dataset_from_directory + predict",
    }
    for side, label in labels.items():
        ratio = median[side] / median["visionflow"]
        print(f"| {label} | {median[side]:.1f} | {count / median[side]:,.0f} | {ratio:.2f}x |")
    stage = statistics.median(stage_seconds)
    print(f"| (its scoring stage alone: decode, predict, write) | {stage:.1f} | {count / stage:,.0f} | |")
    for item in result.get("memory", []):
        print(f"| memory: {item['scored']:,} images | peak {item['peak_mib']:.0f} MiB | {item['seconds']:.1f} s | |")
    print(json.dumps(result))
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

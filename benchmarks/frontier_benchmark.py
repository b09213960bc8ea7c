"""Accuracy against training minutes of presets, each trained through `visionflow train` beside `seed`.

    .venv/bin/python benchmarks/frontier_benchmark.py --data ../shared/datasets/cifar10 \
        --presets seed default large xlarge --seeds 0 1 [--home DIR] [--plot FILE | --plot-dir docs]

Every (seed, preset) pair is one `visionflow train --preset P --seed S --json` in a fresh
process on one home, taking turns: all presets with the first seed, then all with the next, so
a slow spell on a shared machine touches every preset. The dataset is ingested once first.
Each run's `training_seconds` (the fit alone) and `test_accuracy` (the evaluation stage's,
with flip test-time augmentation where the network trained with flips) come from its JSON; its
per-epoch validation accuracy and epoch seconds from the registered history.json.

Prints a markdown table (mean and spread over the seeds, time as a ratio to the first preset)
and, last, a JSON object. Writes the accuracy-against-minutes plot, titled with the machine and the
kind its recipes were sized for, to --plot, or to --plot-dir as frontier-<kind>-<cpu>.png (one
picture per kind of machine), and publishes it, with the table, as artifacts of a
`frontier-benchmark` flow run in the home's Prefect. Under ONEDNN_MAX_CPU_ISA=AVX2 a CPU with
bfloat16 units trains as an AVX2-only one would (the recipe, and oneDNN's kernels), which the title says.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_benchmark import machine  # noqa: E402

VISIONFLOW = str(Path(sys.executable).with_name("visionflow"))


def run_json(command: list[str]) -> dict:
    """The JSON a visionflow command printed; the command's own error when it failed."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def train_once(data: str, home: Path, preset: str, seed: int) -> dict:
    """One training run through the CLI, with its per-epoch curve."""
    command = [VISIONFLOW, "train", "--data", data, "--preset", preset, "--seed", str(seed), "--home", str(home)]
    started = time.perf_counter()
    summary = run_json([*command, "--json"])
    model_folder = Path(summary["model_path"]).parent
    history = json.loads((model_folder / "history.json").read_text())
    from visionflow.models.registry import read_metadata

    hyperparameters = read_metadata(model_folder).hyperparameters
    run = {
        "preset": preset,
        "seed": seed,
        "machine_kind": summary["machine_kind"],
        "epochs": summary["epochs_run"],
        "test_accuracy": summary["test_accuracy"],
        "training_seconds": summary["training_seconds"],
        "command_seconds": round(time.perf_counter() - started, 1),
        "epoch_seconds": [round(value, 1) for value in history["epoch_seconds"]],
        "val_accuracy": [round(value, 4) for value in history["val_accuracy"]],
        # Its validation figures then score images it trained on: a curve to watch, not a result.
        "trained_on_validation": bool(hyperparameters["train"].get("train_on_validation", False)),
    }
    print(f"{preset} seed {seed}: {run['test_accuracy']:.4f} in {run['training_seconds']:.0f} s", file=sys.stderr)
    return run


def summarize(runs: list[dict], presets: list[str]) -> list[dict]:
    """Per preset: accuracy and seconds, mean and spread (max - min) over seeds; time against the first preset."""
    rows = []
    for preset in presets:
        mine = [run for run in runs if run["preset"] == preset]
        accuracies = [run["test_accuracy"] for run in mine]
        seconds = [run["training_seconds"] for run in mine]
        rows.append(
            {
                "preset": preset,
                "epochs": mine[0]["epochs"],
                "seeds": len(mine),
                "accuracy_mean": round(statistics.fmean(accuracies), 4),
                "accuracy_spread": round(max(accuracies) - min(accuracies), 4),
                "seconds_mean": round(statistics.fmean(seconds), 1),
                "seconds_spread": round(max(seconds) - min(seconds), 1),
            }
        )
    baseline = rows[0]["seconds_mean"]
    for row in rows:
        row["time_ratio"] = round(row["seconds_mean"] / baseline, 2)
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| preset | epochs | seeds | test accuracy, mean (spread) | training seconds, mean (spread) | time ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['preset']}` | {row['epochs']} | {row['seeds']} | {row['accuracy_mean']:.4f} "
            f"({row['accuracy_spread']:.4f}) | {row['seconds_mean']:.0f} ({row['seconds_spread']:.0f}) "
            f"| {row['time_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], presets: list[str], title: str, path: Path) -> None:
    """Write the figure of draw() to path as a PNG."""
    from matplotlib import pyplot as plt

    figure = draw(runs, presets, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw(runs: list[dict], presets: list[str], title: str):
    """Validation accuracy after each epoch against minutes of training, a line per run (dashed for a
    run that also trained on the validation split); test accuracy as a star."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, preset in enumerate(presets):
        colour = colours[index % len(colours)]
        for number, run in enumerate(run for run in runs if run["preset"] == preset):
            minutes, elapsed = [], 0.0
            for seconds in run["epoch_seconds"]:
                elapsed += seconds
                minutes.append(elapsed / 60)
            label = preset if number == 0 else None
            style = "--" if run.get("trained_on_validation") else "-"
            axis.plot(
                minutes, run["val_accuracy"], style, color=colour, marker="o", markersize=3, alpha=0.8, label=label
            )
            axis.plot(run["training_seconds"] / 60, run["test_accuracy"], color=colour, marker="*", markersize=12)
    axis.set(xlabel="training minutes", ylabel="accuracy", title=title)
    axis.grid(alpha=0.3)
    axis.legend(title="lines: validation per epoch (dashed: also trained on)\nstars: test", loc="lower right")
    figure.tight_layout()
    return figure


def publish(home: Path, plot_path: Path, table: str) -> None:
    """The plot and the table as artifacts of a frontier-benchmark flow run in the home's Prefect."""
    from visionflow.home import configure_environment
    from visionflow.processes.temporary_server import start_temporary_server

    configure_environment(home)
    server = start_temporary_server()  # None when PREFECT_API_URL names a running server.
    if server is not None:
        server.wait_until_healthy()
    from prefect import flow

    from visionflow.run_context import publish_image, publish_markdown

    @flow(name="frontier-benchmark")
    def frontier_benchmark() -> None:
        publish_image("frontier-plot", plot_path, "Accuracy against training minutes, per preset and seed")
        publish_markdown("frontier-table", table, "Presets: test accuracy and training time over seeds")

    frontier_benchmark()


def slug(text: str) -> str:
    """text in lower case with every run of other characters than letters and digits as one hyphen."""
    return "-".join("".join(character if character.isalnum() else " " for character in text.lower()).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a labelled image folder, e.g. ../shared/datasets/cifar10")
    parser.add_argument("--presets", nargs="+", default=["seed", "default", "large", "xlarge"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--home", type=Path, default=None, help="VISIONFLOW_HOME for the runs (default: a new one)")
    parser.add_argument("--plot", type=Path, default=None, help="where the PNG goes (default: HOME/frontier.png)")
    parser.add_argument("--plot-dir", type=Path, default=None, help="a folder for frontier-<kind>-<cpu>.png instead")
    arguments = parser.parse_args()
    home = arguments.home or Path(tempfile.mkdtemp(prefix="visionflow-frontier-"))
    described = machine()
    plot_path = arguments.plot or home / "frontier.png"
    if arguments.plot_dir:
        plot_path = arguments.plot_dir / f"frontier-{described['kind']}-{slug(described['cpu'])}.png"
    run_json([VISIONFLOW, "ingest", "--data", arguments.data, "--home", str(home), "--json"])
    runs = [train_once(arguments.data, home, preset, seed) for seed in arguments.seeds for preset in arguments.presets]
    rows = summarize(runs, arguments.presets)
    table = markdown_table(rows)
    cap = f", oneDNN capped at {described['onednn_max_isa']}" if described["onednn_max_isa"] else ""
    title = (
        f"{Path(arguments.data).name}: {described['cpu']}, {described['cores']} cores, recipes for "
        f"{described['kind']}{cap}, {time.strftime('%Y-%m-%d')}"
    )
    plot(runs, arguments.presets, title, plot_path)
    publish(home, plot_path, table)
    print(table)
    print(json.dumps({"machine": described, "date": time.strftime("%Y-%m-%d"), "plot": str(plot_path),
                      "rows": rows, "runs": runs}))  # fmt: skip


if __name__ == "__main__":
    main()

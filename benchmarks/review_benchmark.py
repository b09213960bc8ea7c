"""What reviewed labels are worth: least-sure labels against random ones, on CIFAR-10, from the command line.

    .venv/bin/python benchmarks/review_benchmark.py --data ../shared/datasets/cifar10 \\
        [--base 5000] [--pool 30000] [--labels 2000] [--seeds 0 1] [--preset default] \\
        [--work /tmp/review-benchmark] [--out benchmarks/results/review.json]

Per seed: a base model is trained on --base training images (the same number per class; val
carved from them) with the official test split; a pool of --pool other training images is scored
as one drop. Two reviews of the pool are made with `visionflow review`: the --labels contents the
base model is least sure of, and --labels drawn at random. Each review's contents get their known
classes through `visionflow labels import` (a CSV of sha256 and label, the path a person's answers
take) in a copy of the home, and `visionflow train --with-labels` retrains there. Every number is
the test accuracy `visionflow train --json` reports, on the same 10,000 test images.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

VISIONFLOW = [sys.executable, "-m", "visionflow"]


def run_json(*arguments: str, home: Path, keep: Path | None = None) -> dict:
    """Run a visionflow command with --json and return its JSON (exit 4 from an import is allowed).

    With keep, the JSON is saved there, and a later run of the benchmark reuses it instead of
    running the command again (a long run interrupted goes on where it stopped).
    """
    if keep is not None and keep.is_file():
        return json.loads(keep.read_text())
    result = subprocess.run([*VISIONFLOW, *arguments, "--home", str(home), "--json"], capture_output=True, text=True)
    if result.returncode not in (0, 4) or not result.stdout.strip():
        raise SystemExit(f"{' '.join(arguments)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    document = json.loads(result.stdout.strip().splitlines()[-1])
    if keep is not None:
        keep.write_text(json.dumps(document))
    return document


def link_images(files: list[Path], folder: Path, layout: str) -> None:
    """Copy files under folder as <class>/<name> ("classes") or <class>-<name> ("flat", a drop)."""
    for source in files:
        class_name = source.parent.name
        target = folder / class_name / source.name if layout == "classes" else folder / f"{class_name}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def build_folders(data: Path, work: Path, base_count: int, pool_count: int) -> dict[str, str]:
    """The base dataset folder, the pool drop; returns each pool file's class by its name."""
    classes = sorted(folder.name for folder in (data / "train").iterdir() if folder.is_dir())
    per_class_base, per_class_pool = base_count // len(classes), pool_count // len(classes)
    truth: dict[str, str] = {}
    if not (work / "base" / "test").is_dir():
        for class_name in classes:
            files = sorted((data / "train" / class_name).iterdir())
            link_images(files[:per_class_base], work / "base" / "train", "classes")
            link_images(files[per_class_base : per_class_base + per_class_pool], work / "pool", "flat")
        link_images(sorted((data / "test").glob("*/*")), work / "base" / "test", "classes")
    for path in (work / "pool").iterdir():
        truth[path.name] = path.name.split("-", 1)[0]
    return truth


def labels_csv(review: dict, truth: dict[str, str], path: Path) -> Path:
    """A CSV giving each reviewed content its known class, as a labeller would."""
    rows = ["sha256,label,reviewer", *(f"{item['sha256']},{truth[Path(item['drop_path']).name]},benchmark"
                                       for item in review["items"])]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    return path


# Each arm: the review options that choose its labels (the count is --labels).
ARMS = {
    "least_sure": ["--count", "{labels}", "--random", "0"],
    "random": ["--count", "0", "--random", "{labels}"],
}


def one_seed(seed: int, arguments: argparse.Namespace, truth: dict[str, str]) -> dict:
    work, home = arguments.work, arguments.work / f"home-s{seed}"
    base = run_json("train", "--data", str(work / "base"), "--preset", arguments.preset, "--seed", str(seed),
                    home=home, keep=work / f"base-s{seed}.json")  # fmt: skip
    scored = run_json("score", str(work / "pool"), home=home, keep=work / f"score-s{seed}.json")
    result = {"seed": seed, "base": _trained(base), "pool_scored": scored["scored"], "score_seconds": scored["seconds"]}
    for arm in arguments.arms:
        keep = work / f"arm-{arm}-s{seed}.json"
        if keep.is_file():
            result[arm] = json.loads(keep.read_text())
            continue
        options = [option.format(labels=arguments.labels) for option in ARMS[arm]]
        review = run_json("review", "--drop", str(work / "pool"), *options, "--seed", str(seed), home=home)
        arm_home = work / f"home-s{seed}-{arm}"
        shutil.rmtree(arm_home, ignore_errors=True)
        shutil.copytree(home, arm_home, symlinks=True)
        imported = run_json("labels", "import", str(labels_csv(review, truth, work / f"{arm}-s{seed}.csv")),
                            home=arm_home)  # fmt: skip
        wrong = sum(item["top"][0]["class_name"] != truth[Path(item["drop_path"]).name] for item in review["items"])
        retrained = run_json("train", "--data", str(work / "base"), "--preset", arguments.preset, "--seed", str(seed),
                             "--with-labels", home=arm_home)  # fmt: skip
        result[arm] = {**_trained(retrained), "labels_accepted": imported["accepted"],
                       "base_model_wrong_on_reviewed": wrong, "labels": retrained.get("labels")}  # fmt: skip
        keep.write_text(json.dumps(result[arm]))
        shutil.rmtree(arm_home)  # A copy of the home per arm and seed; the figures are kept above.
    return result


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (figures are compared only on one machine)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _trained(summary: dict) -> dict:
    return {
        key: summary.get(key)
        for key in ("model_version", "test_accuracy", "macro_f1", "training_seconds", "epochs_run")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=int, default=5000)
    parser.add_argument("--pool", type=int, default=30000)
    parser.add_argument("--labels", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["least_sure", "random"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/review-benchmark"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/review.json"))
    arguments = parser.parse_args()
    if not (arguments.data / "train").is_dir():
        raise SystemExit(f"{arguments.data} has no train folder: point --data at the CIFAR-10 image folders")
    truth = build_folders(arguments.data, arguments.work, arguments.base, arguments.pool)
    results = []
    for seed in arguments.seeds:
        results.append(one_seed(seed, arguments, truth))
        print(json.dumps(results[-1]), flush=True)
    chosen_arms = [arm for arm in arguments.arms if arm != "random"]
    gains = {arm: [(r[arm]["test_accuracy"] - r["random"]["test_accuracy"]) * 100 for r in results]
             for arm in chosen_arms if "random" in arguments.arms}  # fmt: skip
    summary = {"cpu": cpu_model(), "arguments": {k: str(v) for k, v in vars(arguments).items()}, "seeds": results,
               "gain_points_over_random": gains,
               "mean_gain_points_over_random": {arm: sum(v) / len(v) for arm, v in gains.items()}}  # fmt: skip
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(summary, indent=2) + "\n")
    for r in results:
        accuracy = {arm: r[arm]["test_accuracy"] for arm in ("base", *arguments.arms)}
        print(f"seed {r['seed']}: " + ", ".join(f"{arm} {value:.4f}" for arm, value in accuracy.items()))
    for arm, values in gains.items():
        print(f"{arm} minus random: {', '.join(f'{gain:+.2f}' for gain in values)} points")


if __name__ == "__main__":
    main()

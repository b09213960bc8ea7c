"""Stage: two models side by side on the same labelled images.

Both evaluations (tasks/train/evaluate_model.py) ran on one test split; this stage puts their
accuracy and per-class recall next to each other and lists where they disagree, image by image:
how often only one of them is right, and examples to look at. It writes comparison.json and
publishes it as table and markdown artifacts.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.atomic import write_json_atomically
from visionflow.errors import BadInputError
from visionflow.models.evaluation_metrics import RecordedMetrics
from visionflow.run_context import publish_markdown, publish_table, run_logger
from visionflow.tasks.train.evaluate_model import EvaluationResult

EXAMPLES = 20  # Disagreeing images listed in the comparison, for a person to look at.


class Comparison(BaseModel):
    """Two models on the same images."""

    models: list[str]  # The two model names, first and second.
    images: int  # Test images both predicted.
    accuracy: dict[str, float]  # Share right, 0 to 1, by model name.
    recall_by_class: list[dict]  # Per class: its name, each model's recall (0 to 1), second minus first.
    disagreements: int  # Images the two models predict differently.
    only_first_right: int  # Images only the first model gets right.
    only_second_right: int  # Images only the second model gets right.
    examples: list[dict]  # Up to EXAMPLES disagreeing images: path, true class, each model's answer.
    comparison_path: str  # comparison.json.

    def largest_recall_differences(self, count: int) -> list[tuple[str, float]]:
        """(class, second model's recall minus the first's) of the count classes that differ most."""
        rows = sorted(self.recall_by_class, key=lambda row: -abs(row["difference"]))[:count]
        return [(row["class"], row["difference"]) for row in rows]


def compare(
    names: tuple[str, str],
    metrics: tuple[RecordedMetrics, RecordedMetrics],
    predictions: tuple[pd.DataFrame, pd.DataFrame],
) -> dict:
    """The side-by-side numbers of two evaluations of the same split (predictions joined by path)."""
    first, second = names
    joined = predictions[0].merge(predictions[1], on=["path", "true_class"], suffixes=("_first", "_second"))
    if len(joined) != len(predictions[0]) or len(joined) != len(predictions[1]):
        raise BadInputError("the two evaluations did not score the same images; evaluate both on one folder")
    first_right = joined["predicted_class_first"] == joined["true_class"]
    second_right = joined["predicted_class_second"] == joined["true_class"]
    differ = joined[joined["predicted_class_first"] != joined["predicted_class_second"]]
    recalls = metrics[0].recall_by_class()
    recall_by_class = [
        {
            "class": row.class_name,
            first: recalls[row.class_name],
            second: row.recall,
            "difference": round(row.recall - recalls[row.class_name], 4),
        }  # fmt: skip
        for row in metrics[1].per_class
    ]
    examples = [
        {
            "path": row.path,
            "true_class": row.true_class,
            first: row.predicted_class_first,
            second: row.predicted_class_second,
        }  # fmt: skip
        for row in differ.head(EXAMPLES).itertuples()
    ]
    return {
        "models": [first, second],
        "images": len(joined),
        "accuracy": {first: metrics[0].accuracy, second: metrics[1].accuracy},
        "recall_by_class": recall_by_class,
        "disagreements": len(differ),
        "only_first_right": int((first_right & ~second_right).sum()),
        "only_second_right": int((second_right & ~first_right).sum()),
        "examples": examples,
    }


def comparison_markdown(comparison: dict) -> str:
    first, second = comparison["models"]
    lines = [
        f"# {first} against {second} on {comparison['images']:,} images",
        "",
        f"- accuracy: {first} {comparison['accuracy'][first]:.4f}, {second} {comparison['accuracy'][second]:.4f}",
        f"- they disagree on {comparison['disagreements']:,} images: only {first} right on "
        f"{comparison['only_first_right']:,}, only {second} right on {comparison['only_second_right']:,}",
        "",
        f"| class | recall {first} | recall {second} | difference |",
        "|---|---|---|---|",
    ]
    for row in comparison["recall_by_class"]:
        lines.append(f"| {row['class']} | {row[first]:.4f} | {row[second]:.4f} | {row['difference']:+.4f} |")
    return "\n".join(lines)


@task(name="compare-models", cache_policy=NO_CACHE)
def compare_models_task(
    names: tuple[str, str], evaluations: tuple[EvaluationResult, EvaluationResult], output_dir: Path
) -> Comparison:
    """Prefect task: compare two evaluations of one split; write comparison.json, publish artifacts."""
    frames = tuple(pd.read_parquet(evaluation.predictions_path) for evaluation in evaluations)
    comparison = compare(names, (evaluations[0].metrics, evaluations[1].metrics), frames)
    path = write_json_atomically(Path(output_dir) / "comparison.json", comparison)
    publish_markdown("model-comparison", comparison_markdown(comparison), f"{names[0]} against {names[1]}")
    publish_table("model-disagreements", comparison["examples"], "Images the two models predict differently")
    run_logger(__name__).info(
        "%s %.4f against %s %.4f; %d disagreements", names[0], comparison["accuracy"][names[0]],
        names[1], comparison["accuracy"][names[1]], comparison["disagreements"],
    )  # fmt: skip
    return Comparison(**comparison, comparison_path=str(path))

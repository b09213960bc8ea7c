"""Review stage: choose, among a drop's scored contents, those people should label.

The model's sureness about an image is its margin: the probability of its best class minus that
of its second best. A small margin means two classes were nearly tied, which is where a label
moves the decision boundary most ("margin sampling"); the smallest top probability would also
count images spread evenly over many classes, and entropy would weigh classes far from the
decision that a label does not settle. A few contents drawn at random join as a control, so a
team can see how often the model is wrong where it is sure, and how much the least-sure choice
gains over labelling at random. Each content is chosen once, whatever the number of its copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.errors import BadInputError
from visionflow.home import HomeLayout, resolve_home
from visionflow.labels.review_sets import ClassGuess, ReviewItem, ReviewSet, new_review_id, now_utc, save_review_set
from visionflow.ledger.drops import DropOutputs
from visionflow.ledger.scored_rows import ScoredRows, last_scored_folder, read_scored_rows
from visionflow.models.registry import CHAMPION, find_model
from visionflow.run_context import run_logger

TOP_CLASSES = 3  # Best classes a review item shows with their probabilities.


class ReviewChoiceConfig(BaseModel):
    """How many contents a review asks about, and how the control is drawn."""

    count: int = Field(default=40, ge=0)  # Contents the model is least sure of, in images.
    random: int = Field(default=10, ge=0)  # Contents drawn at random among the rest, in images.
    seed: int = 0  # Seed of the random draw.
    model: str = CHAMPION  # The registered model whose predictions decide: "champion" or a version.


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Each row's best probability minus its second best, 0 to 1 (1 for a single class)."""
    if probabilities.shape[1] < 2:
        return np.ones(len(probabilities), dtype=np.float32)
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def choose_rows(rows: ScoredRows, count: int, random: int, seed: int) -> list[tuple[int, str]]:
    """(row index, reason) of the chosen rows: the `count` smallest margins, then `random` others.

    One row stands for each content (its first file); ties in margin go to the smaller sha256, so
    the same drop and model always give the same choice.
    """
    first_row: dict[str, int] = {}
    for index, sha256 in enumerate(rows.sha256s):
        first_row.setdefault(sha256, index)
    candidates = np.array(sorted(first_row.values(), key=lambda index: rows.sha256s[index]), dtype=np.int64)
    if candidates.size == 0:
        return []
    order = candidates[np.argsort(margins(rows.probabilities[candidates]), kind="stable")]
    least_sure = order[:count]
    rest = np.sort(order[count:])
    drawn = np.random.default_rng(seed).choice(rest, size=min(random, rest.size), replace=False) if rest.size else []
    return [(int(index), "least-sure") for index in least_sure] + [(int(index), "random") for index in drawn]


def review_item(rows: ScoredRows, index: int, reason: str, drop_folder: Path) -> ReviewItem:
    """The review's record of one chosen row."""
    probabilities = rows.probabilities[index]
    best = np.argsort(-probabilities, kind="stable")[:TOP_CLASSES]
    return ReviewItem(
        sha256=rows.sha256s[index],
        path=str(drop_folder / rows.paths[index]),
        drop_path=rows.paths[index],
        top=[ClassGuess(class_name=rows.class_names[c], probability=round(float(probabilities[c]), 6)) for c in best],
        margin=round(float(margins(probabilities[None, :])[0]), 6),
        reason=reason,
    )


def resolve_drop(layout: HomeLayout, drop: str) -> tuple[DropOutputs, Path]:
    """The outputs and the folder of a drop given as its folder or its name."""
    given = Path(drop).expanduser()
    outputs = DropOutputs(layout.predictions / given.name)
    if not outputs.predictions.is_dir():
        raise BadInputError(
            f"drop {given.name!r} has no predictions under {layout.predictions}: score it first "
            f"(visionflow score {drop})"
        )
    folder = given.resolve() if given.is_dir() else last_scored_folder(outputs)
    return outputs, folder or given.resolve()


def choose_review(layout: HomeLayout, drop: str, config: ReviewChoiceConfig) -> ReviewSet:
    """Choose what people should review in a drop and save the review set; returns it."""
    outputs, folder = resolve_drop(layout, drop)
    record = find_model(layout.models, config.model)
    rows = read_scored_rows(outputs, record.version, record.class_names)
    if not rows.sha256s:
        raise BadInputError(
            f"drop {outputs.name!r} has no predictions by model {record.version}: "
            f"score it with that model first (visionflow score {drop})"
        )
    chosen = choose_rows(rows, config.count, config.random, config.seed)
    review = ReviewSet(
        review_id=new_review_id(outputs.name, record.version),
        drop=str(folder),
        drop_name=outputs.name,
        model_version=record.version,
        classes=record.class_names,
        least_sure=sum(reason == "least-sure" for _, reason in chosen),
        random=sum(reason == "random" for _, reason in chosen),
        seed=config.seed,
        created_at=now_utc(),
        items=[review_item(rows, index, reason, folder) for index, reason in chosen],
    )
    save_review_set(layout.reviews, review)
    return review


@task(name="choose-review", cache_policy=NO_CACHE)
def choose_review_task(drop: str, config: ReviewChoiceConfig, home: str | None = None) -> ReviewSet:
    """Prefect task: choose and save a drop's review set."""
    review = choose_review(resolve_home(home), drop, config)
    run_logger(__name__).info(
        "review %s: %d least-sure and %d random contents of drop %s, by model %s",
        review.review_id, review.least_sure, review.random, review.drop_name, review.model_version,
    )  # fmt: skip
    return review

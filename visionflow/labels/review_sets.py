"""The review-set format: the contents of a drop chosen for people to label, and their answers.

`visionflow review` (tasks/score/choose_review.py) writes one review set per review under
VISIONFLOW_HOME/reviews/<review_id>/review.json; the review flow (flows/review.py) writes each
answered page beside it as answers/page-<NNN>.json, and the Label Studio export reads the set.
This module is the only one that reads or writes those files.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from visionflow.atomic import write_json_atomically
from visionflow.errors import BadInputError, DamagedStateError

REVIEW_FILE = "review.json"
ANSWERS_FOLDER = "answers"

# Why an item is in a review set: the model was least sure of it, or it was drawn at random as a control.
Reason = Literal["least-sure", "random"]

# What a reviewer answers for an image they cannot place in one of the model's classes.
NOT_SURE = "not sure / none of these"


class ClassGuess(BaseModel):
    """One of the model's best classes for an image, with its probability."""

    class_name: str  # The class.
    probability: float  # The model's probability of it, 0 to 1.


class ReviewItem(BaseModel):
    """One content chosen for review."""

    sha256: str  # The content's digest: what a label is attached to.
    path: str  # The file, as an absolute path when the review was made.
    drop_path: str  # The file's path relative to its drop, as the drop's outputs name it.
    top: list[ClassGuess]  # The model's three best classes, best first.
    margin: float  # Probability of the best class minus that of the second, 0 to 1.
    reason: Reason  # Why it was chosen.


class ReviewSet(BaseModel):
    """review.json: which contents of one drop people are asked to label, and why."""

    review_id: str  # The review's name, unique in the home, e.g. "cats-v0003-20261207T101500-3fa2c1".
    drop: str  # The drop folder, as an absolute path.
    drop_name: str  # The drop's name, its identity in the ledger and the outputs.
    model_version: str  # The registered model whose predictions chose the items.
    classes: list[str]  # The model's classes: what a label may be.
    # How sureness is measured: "margin" (best probability minus the second best; smallest first).
    measure: Literal["margin"] = "margin"
    least_sure: int  # Items chosen as least sure.
    random: int  # Items drawn at random, as a control.
    seed: int  # Seed of the random draw.
    created_at: str  # When the set was made, ISO 8601 in UTC.
    items: list[ReviewItem]  # Least-sure items first (least sure first), then the random ones.


class PageAnswer(BaseModel):
    """A reviewer's answer for one item of a page."""

    sha256: str  # The content answered for.
    answer: str  # A class name, or NOT_SURE.


class AnsweredPage(BaseModel):
    """answers/page-<NNN>.json: one page of a review as a reviewer answered it."""

    review_id: str  # The review the page belongs to.
    page: int  # The page's number, from 1.
    reviewer: str  # Who answered (a name the reviewer gave, or the Prefect UI's default).
    answered_at: str  # When the answers arrived, ISO 8601 in UTC.
    flow_run_id: str | None = None  # The review flow run that asked, when one did.
    answers: list[PageAnswer]  # One per item on the page.


def now_utc() -> str:
    """The current time as review files record it: ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_review_id(drop_name: str, model_version: str) -> str:
    """A review name unique in the home: drop, model, time and a random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{drop_name}-{model_version}-{stamp}-{secrets.token_hex(3)}"


def review_dir(reviews_root: Path, review_id: str) -> Path:
    """Where one review keeps its set and answers."""
    if not review_id or "/" in review_id or review_id.startswith("."):
        raise BadInputError(f"{review_id!r} is not a review id: pass one `visionflow review --json` printed")
    return Path(reviews_root) / review_id


def save_review_set(reviews_root: Path, review: ReviewSet) -> Path:
    """Write review.json of a new review set; returns its path."""
    return write_json_atomically(
        review_dir(reviews_root, review.review_id) / REVIEW_FILE, review.model_dump(mode="json")
    )


def load_review_set(reviews_root: Path, review_id: str) -> ReviewSet:
    """A saved review set. Raises BadInputError when there is none, DamagedStateError when unreadable."""
    path = review_dir(reviews_root, review_id) / REVIEW_FILE
    if not path.is_file():
        raise BadInputError(f"no review {review_id!r} under {reviews_root}: `visionflow review --drop DROP` makes one")
    try:
        return ReviewSet.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as error:
        raise DamagedStateError(
            f"{path} is not a review set ({error.__class__.__name__}); make the review again"
        ) from error


def review_sets(reviews_root: Path) -> list[ReviewSet]:
    """Every readable review set in the home, oldest first."""
    found = []
    for path in sorted(Path(reviews_root).glob(f"*/{REVIEW_FILE}")):
        try:
            found.append(ReviewSet.model_validate_json(path.read_bytes()))
        except (ValidationError, ValueError):
            continue  # A damaged set is reported when it is opened by name, not while listing.
    return sorted(found, key=lambda review: review.created_at)


def page_path(reviews_root: Path, review_id: str, page: int) -> Path:
    """Where one answered page is kept."""
    return review_dir(reviews_root, review_id) / ANSWERS_FOLDER / f"page-{page:03d}.json"


def save_answered_page(reviews_root: Path, answered: AnsweredPage) -> Path:
    """Keep an answered page. Raises BadInputError when that page was answered before: a review's
    page is answered once, and its first answers stay."""
    path = page_path(reviews_root, answered.review_id, answered.page)
    if path.exists():
        raise BadInputError(
            f"page {answered.page} of review {answered.review_id} was answered already ({path}); its answers stay"
        )
    return write_json_atomically(path, answered.model_dump(mode="json"))


def answered_pages(reviews_root: Path, review_id: str) -> list[AnsweredPage]:
    """The pages of a review answered so far, by page number."""
    folder = review_dir(reviews_root, review_id) / ANSWERS_FOLDER
    return [AnsweredPage.model_validate_json(path.read_bytes()) for path in sorted(folder.glob("page-*.json"))]

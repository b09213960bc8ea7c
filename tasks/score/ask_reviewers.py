"""Review stage: ask people, page by page in Prefect's UI, what the images of a review set show.

A review set (visionflow/labels/review_sets.py) is cut into pages of about 20 images. For each
page the review flow (flows/review.py) pauses its run with a form built here: one choice per image
(the review's classes, or "not sure / none of these"), and the reviewer's name. Each choice shows
its image inline, upscaled so a 32x32 image can be judged, with the model's best guesses.
Answering the form resumes the run; the answered page is kept as answers/page-NNN.json, and its
answers other than "not sure" become labels in the labels store (visionflow/labels/labels_store.py,
source "review").

The images travel inside the form as PNG data URIs, one in each choice's description: the UI
renders Markdown images with data: URLs there, so nothing has to be served from the machine and
the form works wherever the browser is (docs/review.md shows it).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Literal

from PIL import Image, UnidentifiedImageError
from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Running
from pydantic import BaseModel, Field, create_model

from visionflow.errors import BadInputError
from visionflow.home import HomeLayout
from visionflow.images.imaging import ImageSpec
from visionflow.labels.labels_store import ImportReport, LabelRow, import_labels
from visionflow.labels.review_sets import (
    NOT_SURE,
    AnsweredPage,
    PageAnswer,
    ReviewItem,
    ReviewSet,
    now_utc,
    page_path,
    save_answered_page,
)
from visionflow.models.registry import find_model
from visionflow.run_context import run_logger

# Side of an image as the form shows it, in pixels: a 32x32 CIFAR image at 5x, large enough to judge.
SHOWN_IMAGE_PIXELS = 160
# How often a paused run asks the server whether it was answered, in seconds: an answer resumes it within this.
ANSWER_POLL_SECONDS = 2
ANSWER_FIELD_PREFIX = "image_"


class ReviewPage(BaseModel):
    """One page of a review: the items a reviewer answers in one form."""

    review_id: str  # The review the page belongs to.
    page: int  # The page's number, from 1.
    pages: int  # How many pages the review has.
    first_number: int  # The number of the page's first image in the review, from 1.
    model_version: str  # The registered model whose guesses the page shows; its input is what a label must decode to.
    classes: list[str]  # What an answer may be, besides NOT_SURE.
    items: list[ReviewItem]  # The page's items, in review order.


class StoredPage(BaseModel):
    """What keeping one answered page did."""

    page: int  # The page's number.
    answers_file: str  # answers/page-NNN.json, as an absolute path.
    labels: int  # Answers naming a class: offered to the labels store.
    not_sure: int  # Answers of "not sure / none of these": kept in the page file, not labels.
    stored: int  # Labels the store accepted as new.
    already_stored: int  # Labels the store held already.
    rejected: list[str]  # Why the store refused any label ("page 2 image 25: ...").
    conflicts: int  # Contents the page's labels touch that now have two different classes (held out of training).


def review_pages(review: ReviewSet, page_size: int) -> list[ReviewPage]:
    """The review cut into pages of page_size items, in review order."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    starts = range(0, len(review.items), page_size)
    return [
        ReviewPage(
            review_id=review.review_id,
            page=index + 1,
            pages=len(starts),
            first_number=start + 1,
            model_version=review.model_version,
            classes=review.classes,
            items=review.items[start : start + page_size],
        )
        for index, start in enumerate(starts)
    ]


def unanswered(pages: list[ReviewPage], answered: list[AnsweredPage]) -> list[ReviewPage]:
    """The pages no answered page covers yet.

    Raises BadInputError when the answered pages were cut another way (another page size): page
    numbers would then name other images, and answers would be skipped or asked twice.
    """
    by_number = {page.page: page for page in pages}
    for kept in answered:
        asked = by_number.get(kept.page)
        if asked is None or [item.sha256 for item in asked.items] != [answer.sha256 for answer in kept.answers]:
            raise BadInputError(
                f"page {kept.page} of review {kept.review_id} was answered with other images than this page size "
                f"puts on it: run the review with the page size it was answered in ({len(kept.answers)} images, "
                "unless that page was its last)"
            )
    done = {kept.page for kept in answered}
    return [page for page in pages if page.page not in done]


def answer_field(number: int) -> str:
    """The form field of the review's image `number` (from 1), e.g. "image_003"."""
    return f"{ANSWER_FIELD_PREFIX}{number:03d}"


def answer_title(number: int, item: ReviewItem) -> str:
    """The label of an image's choice: "Image 3: the model says cat (41 %)"."""
    best = item.top[0]
    return f"Image {number}: the model says {best.class_name} ({best.probability:.0%})".replace("%", " %")


def page_input_class(page: ReviewPage) -> type[RunInput]:
    """The page's form as a RunInput subclass: the reviewer's name, then one required choice per image,
    each described by the image itself and the model's best guesses."""
    choice = Literal[tuple([*page.classes, NOT_SURE])]
    last = page.first_number + len(page.items) - 1
    about = f"Kept with every label you give. Review {page.review_id}, page {page.page} of {page.pages}"
    fields = {
        "reviewer": (
            str,
            # At least one character other than white space: the server checks the form's pattern too.
            Field(pattern=r"\S", title="Your name", description=f"{about} (images {page.first_number} to {last})."),
        ),
    }
    for offset, item in enumerate(page.items):
        number = page.first_number + offset
        described = Field(title=answer_title(number, item), description=answer_description(number, item))
        fields[answer_field(number)] = (choice, described)
    return create_model(f"ReviewPage{page.page}Input", __base__=RunInput, **fields)


def answer_description(number: int, item: ReviewItem) -> str:
    """Markdown under an image's title: the model's best guesses, the file, and the image inline.

    The image sits in its own field's description, right above its choice: Prefect's UI renders
    Markdown images with data: URLs there, while a long page description is squeezed out of
    sight in the form (docs/review.md).
    """
    guesses = ", ".join(f"{guess.class_name} {guess.probability:.0%}" for guess in item.top).replace("%", " %")
    uri = image_data_uri(Path(item.path))
    shown = f"![image {number}]({uri})" if uri else f"*(the image could not be read from {item.path})*"
    return f"Best guesses: {guesses}. File: {item.drop_path}\n\n{shown}"


def image_data_uri(path: Path, side: int = SHOWN_IMAGE_PIXELS) -> str | None:
    """The image as a PNG data URI, its longer side scaled to `side` pixels; None when it cannot be read.

    Small images are enlarged with NEAREST, which keeps each pixel a crisp square instead of
    inventing a blur; larger ones are reduced with LANCZOS.
    """
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    buffer = io.BytesIO()
    image.resize(size, resample).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def page_description(page: ReviewPage) -> str:
    """The form's short Markdown heading: which page, and how to answer (the images are in the fields)."""
    last = page.first_number + len(page.items) - 1
    return (
        f"**Review {page.review_id}**: page {page.page} of {page.pages}, images {page.first_number} to {last}. "
        f"For each image choose what it shows, or *{NOT_SURE}*; your answers become labels for the next model."
    )


def answers_from_input(page: ReviewPage, run_input: BaseModel, flow_run_id: str | None = None) -> AnsweredPage:
    """The page as answered: one PageAnswer per item, from the resumed run's input."""
    values = run_input.model_dump()
    answers = [
        PageAnswer(sha256=item.sha256, answer=values[answer_field(page.first_number + offset)])
        for offset, item in enumerate(page.items)
    ]
    return AnsweredPage(
        review_id=page.review_id,
        page=page.page,
        reviewer=str(values["reviewer"]).strip(),
        answered_at=now_utc(),
        flow_run_id=flow_run_id,
        answers=answers,
    )


def ask_page(page: ReviewPage, timeout_seconds: int) -> BaseModel | None:
    """Pause the calling flow run until the page's form is answered; None when timeout_seconds passed first.

    Called from the flow itself: Prefect pauses flow runs, not task runs.
    """
    form = page_input_class(page).with_initial_data(description=page_description(page))
    try:
        return pause_flow_run(
            wait_for_input=form, timeout=timeout_seconds, poll_interval=ANSWER_POLL_SECONDS, key=f"page-{page.page}"
        )
    except FlowPauseTimeout:
        leave_expired_pause(f"page {page.page} waited {timeout_seconds} s unanswered; the pages answered are kept")
        return None


def leave_expired_pause(message: str) -> None:
    """Move the calling flow run from its expired pause back to Running, so that it ends as its flow says.

    Prefect fails a run whose pause expired ("The flow was paused and never resumed.", or even
    "completed and never resumed" when the flow then returns) and refuses every other move out of
    the pause; a review whose reviewer went away has lost nothing, so its run ends with its own
    summary instead. Forcing the state is the only way past that rule.
    """
    context = FlowRunContext.get()
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(message=message), force=True)


def store_page_labels(layout: HomeLayout, page: ReviewPage, answered: AnsweredPage) -> ImportReport:
    """Offer the page's answers to the labels store, which keeps those naming a class and counts the others."""
    record = find_model(layout.models, page.model_version)
    paths = {item.sha256: item.path for item in page.items}
    rows = [
        LabelRow(
            sha256=answer.sha256,
            path=paths[answer.sha256],
            class_name=answer.answer,
            source="review",
            reviewer=answered.reviewer,
            review_id=answered.review_id,
            labelled_at=answered.answered_at,
            origin=f"page {answered.page} image {page.first_number + offset}",
        )
        for offset, answer in enumerate(answered.answers)
    ]
    return import_labels(layout, rows, page.classes, ImageSpec(*record.input_shape))


def keep_answered_page(layout: HomeLayout, page: ReviewPage, answered: AnsweredPage) -> StoredPage:
    """Store the page's labels, then save the answered page (refused if the page was answered before).

    The labels go first: a page whose file is saved counts as answered and is not asked again, so
    its labels must be in the store by then; storing them twice adds nothing.
    """
    if page_path(layout.reviews, answered.review_id, answered.page).exists():
        save_answered_page(layout.reviews, answered)  # Raises, naming the page answered before.
    report = store_page_labels(layout, page, answered)
    path = save_answered_page(layout.reviews, answered)
    return StoredPage(
        page=page.page,
        answers_file=str(path),
        labels=report.rows - report.not_labels,
        not_sure=report.not_labels,
        stored=report.accepted,
        already_stored=report.already_stored,
        rejected=[f"{rejection.origin}: {rejection.reason}" for rejection in report.rejected],
        conflicts=len(report.conflicts),
    )


@task(name="keep-answered-page", cache_policy=NO_CACHE)
def keep_answered_page_task(layout: HomeLayout, page: ReviewPage, run_input: BaseModel) -> StoredPage:
    """Prefect task: keep the answers of a resumed page and store its labels, logged."""
    log = run_logger(__name__)
    answered = answers_from_input(page, run_input, flow_run_id=current_flow_run.id)
    stored = keep_answered_page(layout, page, answered)
    log.info(
        "page %d of %d answered by %s: %d labels (%d new, %d already stored), %d not sure; kept in %s",
        page.page, page.pages, answered.reviewer, stored.labels, stored.stored, stored.already_stored,
        stored.not_sure, stored.answers_file,
    )  # fmt: skip
    for reason in stored.rejected:
        log.warning("label refused by the labels store: %s", reason)
    if stored.conflicts:
        log.warning(
            "%d images now have two different labels and are held out of training: visionflow labels list --conflicts",
            stored.conflicts,
        )
    return stored

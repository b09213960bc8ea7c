"""The review flow: people label, in Prefect's UI, the images of a drop the model was least sure of.

review: a review set (made by `visionflow review --drop DROP`, or here from `drop`) -> pages of
about 20 images -> for each unanswered page the run pauses with a form (each image inline, the
model's guess, a choice of class or "not sure / none of these") -> an answer resumes it, the page
is kept and its labels stored. A page left unanswered for page_timeout_seconds ends the asking:
the pages answered stay, and running the review again asks only the pages left (docs/review.md).
"""

from __future__ import annotations

from pathlib import Path, PurePath

from prefect import flow
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Completed
from pydantic import BaseModel

from visionflow.access import check_deployment_parameters
from visionflow.errors import BadInputError
from visionflow.home import resolve_home
from visionflow.labels.review_sets import answered_pages, load_review_set
from visionflow.run_context import run_logger
from visionflow.tasks.score.ask_reviewers import ask_page, keep_answered_page_task, review_pages, unanswered
from visionflow.tasks.score.choose_review import ReviewChoiceConfig, choose_review_task


class ReviewSummary(BaseModel):
    """What one run of the review flow asked and kept."""

    review_id: str  # The review.
    pages: int  # Pages in the review.
    answered_before: int  # Pages answered by earlier runs, not asked again.
    answered_now: int  # Pages answered during this run.
    pages_left: int  # Pages still unanswered; run the review again to answer them.
    labels_stored: int  # Labels this run's answers added to the labels store.
    not_sure: int  # Answers of "not sure / none of these" this run.
    timed_out_page: int | None = None  # The page that waited page_timeout_seconds unanswered, if one did.
    message: str  # One sentence saying the above.


def summary_message(summary: ReviewSummary, timeout_seconds: int) -> str:
    """The sentence a run ends with, e.g. "review R: 2 of 5 pages answered (1 now), 3 left: page 3 waited 3600 s"."""
    answered = summary.answered_before + summary.answered_now
    text = f"review {summary.review_id}: {answered} of {summary.pages} pages answered ({summary.answered_now} now)"
    if summary.timed_out_page is not None:
        text += (
            f", {summary.pages_left} left: page {summary.timed_out_page} waited {timeout_seconds} s unanswered;"
            " run the review again to answer the pages left"
        )
    elif summary.pages_left:
        text += f", {summary.pages_left} left"
    return text + f"; {summary.labels_stored} labels stored, {summary.not_sure} not sure"


def review_run_name() -> str:
    """The run's name: "review-" and the review id, or the drop's name for a review made from a drop."""
    parameters = current_flow_run.parameters
    return f"review-{parameters.get('review_id') or PurePath(parameters.get('drop') or 'new').name}"


@flow(name="review", flow_run_name=review_run_name)
def review_flow(
    review_id: str | None = None,
    drop: str | None = None,
    choice: ReviewChoiceConfig | None = None,
    page_size: int = 20,
    page_timeout_seconds: int = 3600,
    home: str | None = None,
) -> ReviewSummary:
    """Ask reviewers, page by page in the UI, what the images of a review show; keep each answered page.

    Args:
        review_id: The review to answer (`visionflow review --json` prints it). Empty: make one from `drop`.
        drop: A scored drop (its folder or name) to make a new review from: its least-sure images and a few
            drawn at random (automation review_on_drift passes the drifted drop's name).
        choice: With drop: how many least-sure and random images, the seed, and the model whose guesses decide.
        page_size: Images per page (one form each).
        page_timeout_seconds: How long a page waits for its answers before the run stops asking.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    # A drop given by name is found through the home's records; one given as a folder must be one the service may read.
    check_deployment_parameters(home, {"drop": drop} if drop and Path(drop).expanduser().is_dir() else {})
    if page_size < 1 or page_timeout_seconds < 1:
        raise BadInputError(f"page_size ({page_size}) and page_timeout_seconds ({page_timeout_seconds}) must be >= 1")
    layout = resolve_home(home)
    if review_id:
        review = load_review_set(layout.reviews, review_id)
    elif drop:
        review = choose_review_task(drop, choice or ReviewChoiceConfig(), str(layout.root))
    else:
        raise BadInputError("give review_id (a review `visionflow review` made) or drop (a scored drop to review)")
    log = run_logger(__name__)
    pages = review_pages(review, page_size)
    before = answered_pages(layout.reviews, review.review_id)
    to_ask = unanswered(pages, before)
    summary = ReviewSummary(
        review_id=review.review_id,
        pages=len(pages),
        answered_before=len(pages) - len(to_ask),
        answered_now=0,
        pages_left=len(to_ask),
        labels_stored=0,
        not_sure=0,
        message="",
    )
    log.info(
        "review %s: %d pages of up to %d images, %d to answer", review.review_id, len(pages), page_size, len(to_ask)
    )
    for page in to_ask:
        run_input = ask_page(page, page_timeout_seconds)
        if run_input is None:
            summary.timed_out_page = page.page
            break
        stored = keep_answered_page_task(layout, page, run_input)
        summary.answered_now += 1
        summary.pages_left -= 1
        summary.labels_stored += stored.stored
        summary.not_sure += stored.not_sure
    summary.message = summary_message(summary, page_timeout_seconds)
    log.info("%s", summary.message)
    # The run ends Completed with the summary as its state's message, so the runs list in the UI says
    # how many pages were answered and how many are left; calling the flow returns the summary itself.
    return Completed(message=summary.message, data=summary)

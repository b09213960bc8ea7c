"""The review stage: each page's form, its images, its answers, and keeping an answered page once."""

from __future__ import annotations

import base64
import io
import re
import typing

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from visionflow.errors import BadInputError
from visionflow.home import resolve_home
from visionflow.labels.labels_store import LabelsStore
from visionflow.labels.review_sets import NOT_SURE, answered_pages
from visionflow.tasks.score.ask_reviewers import (
    SHOWN_IMAGE_PIXELS,
    answer_field,
    answers_from_input,
    keep_answered_page,
    page_description,
    page_input_class,
    review_pages,
    unanswered,
)
from visionflow.tasks.score.choose_review import ReviewChoiceConfig, choose_review

from tests.review_helpers import scored_drop
from tests.scoring_helpers import CLASSES

# Five images; the model leans to blue, green, red, blue, green with a margin growing image by image.
PROBABILITIES = np.array(
    [[0.40, 0.35, 0.25], [0.30, 0.42, 0.28], [0.20, 0.30, 0.50], [0.60, 0.25, 0.15], [0.10, 0.75, 0.15]],
    dtype=np.float32,
)
DATA_URI_IMAGE = re.compile(r"!\[image (\d+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture
def review(tmp_path):
    """A real review set of a scored drop of five 12x12 images (all five least sure, none random)."""
    layout = resolve_home(tmp_path / "home")
    scored_drop(layout, tmp_path / "drop", PROBABILITIES)
    return layout, choose_review(layout, str(tmp_path / "drop"), ReviewChoiceConfig(count=5, random=0))


def _answers(page, values: list[str], reviewer: str = "ana") -> dict:
    return {"reviewer": reviewer, **{answer_field(page.first_number + i): value for i, value in enumerate(values)}}


def test_pages_number_images_through_the_review(review):
    _, chosen = review
    pages = review_pages(chosen, page_size=2)
    assert [(page.page, page.pages, page.first_number, len(page.items)) for page in pages] == [
        (1, 3, 1, 2),
        (2, 3, 3, 2),
        (3, 3, 5, 1),
    ]
    assert [item.sha256 for page in pages for item in page.items] == [item.sha256 for item in chosen.items]


def test_a_page_form_has_the_reviewer_and_one_choice_per_image_among_the_classes_and_not_sure(review):
    _, chosen = review
    page = review_pages(chosen, page_size=2)[1]
    form = page_input_class(page)
    assert list(form.model_fields) == ["reviewer", "image_003", "image_004"]
    for number, item in zip((3, 4), page.items, strict=True):
        field = form.model_fields[answer_field(number)]
        assert set(typing.get_args(field.annotation)) == {*CLASSES, NOT_SURE}
        best = item.top[0]
        assert field.title == f"Image {number}: the model says {best.class_name} ({round(best.probability * 100)} %)"
        assert field.is_required()
    schema = form.model_json_schema()
    assert schema["properties"]["image_003"]["enum"] == [*CLASSES, NOT_SURE]
    assert set(schema["required"]) == {"reviewer", "image_003", "image_004"}


def test_each_choice_shows_its_own_image_enlarged_to_be_judged(review):
    _, chosen = review
    page = review_pages(chosen, page_size=2)[0]
    schema = page_input_class(page).model_json_schema()
    for number in (1, 2):
        found = DATA_URI_IMAGE.findall(schema["properties"][answer_field(number)]["description"])
        assert [int(shown) for shown, _ in found] == [number]
        image = Image.open(io.BytesIO(base64.b64decode(found[0][1])))
        assert image.format == "PNG" and image.size == (SHOWN_IMAGE_PIXELS, SHOWN_IMAGE_PIXELS)
    assert "page 1 of 3" in page_description(page) and "images 1 to 2" in page_description(page)


def test_an_unreadable_image_is_named_instead_of_shown(review):
    _, chosen = review
    page = review_pages(chosen, page_size=2)[0]
    page.items[0].path = str(page.items[0].path) + ".gone"
    description = page_input_class(page).model_json_schema()["properties"]["image_001"]["description"]
    assert "could not be read" in description and not DATA_URI_IMAGE.search(description)


def test_answers_map_to_the_page_items_in_order(review):
    _, chosen = review
    page = review_pages(chosen, page_size=2)[0]
    run_input = page_input_class(page)(**_answers(page, ["red", NOT_SURE], reviewer=" ana "))
    answered = answers_from_input(page, run_input, flow_run_id="run-1")
    assert (answered.review_id, answered.page, answered.reviewer, answered.flow_run_id) == (
        chosen.review_id,
        1,
        "ana",
        "run-1",
    )
    assert [(answer.sha256, answer.answer) for answer in answered.answers] == [
        (page.items[0].sha256, "red"),
        (page.items[1].sha256, NOT_SURE),
    ]


@pytest.mark.parametrize(
    "change",
    [{"image_001": "purple"}, {"image_001": ""}, {"reviewer": ""}, {"reviewer": "  "}],
    ids=["no-such-class", "empty", "no-name", "blank-name"],
)
def test_an_answer_outside_the_choices_is_refused(review, change):
    _, chosen = review
    page = review_pages(chosen, page_size=2)[0]
    with pytest.raises(ValidationError):
        page_input_class(page)(**{**_answers(page, ["red", "blue"]), **change})


def test_a_kept_page_stores_its_class_answers_as_labels_and_not_sure_in_the_page_only(review):
    layout, chosen = review
    page = review_pages(chosen, page_size=2)[0]
    answered = answers_from_input(page, page_input_class(page)(**_answers(page, ["red", NOT_SURE])))
    stored = keep_answered_page(layout, page, answered)
    assert (stored.labels, stored.not_sure, stored.stored, stored.rejected) == (1, 1, 1, [])
    assert [kept.answers for kept in answered_pages(layout.reviews, chosen.review_id)] == [answered.answers]
    with LabelsStore(layout) as store:
        labels = store.labels()
    assert [(label.sha256, label.class_name, label.source, label.reviewer, label.review_id) for label in labels] == [
        (page.items[0].sha256, "red", "review", "ana", chosen.review_id)
    ]


def test_a_page_answered_twice_is_refused_and_keeps_its_first_answers(review):
    layout, chosen = review
    page = review_pages(chosen, page_size=2)[0]
    first = answers_from_input(page, page_input_class(page)(**_answers(page, ["red", "blue"])))
    keep_answered_page(layout, page, first)
    second = answers_from_input(page, page_input_class(page)(**_answers(page, ["green", "green"], reviewer="ben")))
    with pytest.raises(BadInputError, match="answered already"):
        keep_answered_page(layout, page, second)
    assert answered_pages(layout.reviews, chosen.review_id)[0].answers == first.answers
    with LabelsStore(layout) as store:
        assert {label.class_name for label in store.labels()} == {"red", "blue"}


def test_only_unanswered_pages_are_asked_and_a_page_size_change_is_refused(review):
    layout, chosen = review
    pages = review_pages(chosen, page_size=2)
    keep_answered_page(
        layout, pages[1], answers_from_input(pages[1], page_input_class(pages[1])(**_answers(pages[1], ["red", "red"])))
    )
    kept = answered_pages(layout.reviews, chosen.review_id)
    assert [page.page for page in unanswered(pages, kept)] == [1, 3]
    with pytest.raises(BadInputError, match="page size"):
        unanswered(review_pages(chosen, page_size=3), kept)

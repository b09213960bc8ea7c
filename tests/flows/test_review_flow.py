"""The review flow on a real Prefect server: it pauses page by page, is answered through Prefect's API
(`resume_flow_run` with `run_input`, as the UI's form does), keeps each page, and asks again only the
pages a timed-out run left."""

from __future__ import annotations

import contextvars
import json
import threading
import time

import numpy as np
import pytest

from visionflow.home import resolve_home
from visionflow.labels.labels_store import LabelsStore
from visionflow.labels.review_sets import NOT_SURE, answered_pages
from visionflow.tasks.score.choose_review import ReviewChoiceConfig, choose_review

from tests.review_helpers import scored_drop
from tests.scoring_helpers import CLASSES

PROBABILITIES = np.array([[0.40, 0.35, 0.25], [0.30, 0.42, 0.28], [0.20, 0.30, 0.50]], dtype=np.float32)
WAIT_SECONDS = 120  # Longest a test waits for the run to reach a state; a failure, never a measurement.

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def review(tmp_path):
    """A real review set of three 12x12 images of a scored drop: two pages of two and one."""
    layout = resolve_home(tmp_path / "home")
    scored_drop(layout, tmp_path / "drop", PROBABILITIES)
    return layout, choose_review(layout, str(tmp_path / "drop"), ReviewChoiceConfig(count=3, random=0))


class FlowInThread:
    """review_flow running in a thread (with this test's Prefect settings), as a served run would."""

    def __init__(self, **parameters) -> None:
        from visionflow.flows.review import review_flow

        self.result = self.error = None
        context = contextvars.copy_context()  # Prefect's settings (the test server's URL) live in context variables.
        self.thread = threading.Thread(target=context.run, args=(self._run, review_flow, parameters), daemon=True)
        self.thread.start()

    def _run(self, review_flow, parameters) -> None:
        try:
            self.result = review_flow(**parameters)
        except BaseException as error:  # Kept for the test to look at.
            self.error = error

    def join(self):
        self.thread.join(WAIT_SECONDS)
        assert not self.thread.is_alive(), "the review flow did not finish"
        return self.result


def paused_run(review_id: str, pause_key: str, runner: FlowInThread):
    """The review's flow run once it is paused at pause_key."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterState

    deadline = time.monotonic() + WAIT_SECONDS
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert runner.error is None, runner.error
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[f"review-{review_id}"]),
                    state=FlowRunFilterState(type={"any_": ["PAUSED"]}),
                )
            )
            paused = [run for run in runs if run.state.state_details.pause_key == pause_key]
            if paused:
                return paused[0]
            time.sleep(0.2)
    raise AssertionError(f"review {review_id} never paused at {pause_key}")


def input_schema(run) -> dict:
    """The form the paused run waits for, read back through the API as the UI reads it."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return json.loads(client.read_flow_run_input(run.id, f"paused-{run.state.state_details.pause_key}-schema"))


def final_state(run_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def test_a_review_is_answered_page_by_page_through_the_api(review):
    from prefect.flow_runs import resume_flow_run

    layout, chosen = review
    sha256s = [item.sha256 for item in chosen.items]
    runner = FlowInThread(review_id=chosen.review_id, page_size=2, page_timeout_seconds=600, home=str(layout.root))

    first = paused_run(chosen.review_id, "page-1", runner)
    schema = input_schema(first)
    assert list(schema["properties"]) == ["reviewer", "image_001", "image_002"]
    assert schema["properties"]["image_001"]["enum"] == [*CLASSES, NOT_SURE]
    with pytest.raises(RuntimeError, match="Cannot resume"):  # The server checks the answers against the form.
        resume_flow_run(first.id, run_input={"reviewer": "ana", "image_001": "purple", "image_002": "red"})
    with pytest.raises(RuntimeError, match="Cannot resume"):
        resume_flow_run(first.id, run_input={"reviewer": " ", "image_001": "red", "image_002": "red"})
    resume_flow_run(first.id, run_input={"reviewer": "ana", "image_001": "red", "image_002": NOT_SURE})

    second = paused_run(chosen.review_id, "page-2", runner)
    assert list(input_schema(second)["properties"]) == ["reviewer", "image_003"]
    resume_flow_run(second.id, run_input={"reviewer": "ben", "image_003": "green"})

    summary = runner.join()
    assert runner.error is None, runner.error
    assert (summary.pages, summary.answered_now, summary.pages_left, summary.labels_stored, summary.not_sure) == (
        2,
        2,
        0,
        2,
        1,
    )
    assert final_state(first.id).is_completed()
    kept = answered_pages(layout.reviews, chosen.review_id)
    assert [(page.page, page.reviewer, page.flow_run_id) for page in kept] == [
        (1, "ana", str(first.id)),
        (2, "ben", str(first.id)),
    ]
    assert [answer.answer for page in kept for answer in page.answers] == ["red", NOT_SURE, "green"]
    with LabelsStore(layout) as store:
        stored = {(label.sha256, label.class_name, label.reviewer) for label in store.labels()}
    assert stored == {(sha256s[0], "red", "ana"), (sha256s[2], "green", "ben")}


def test_a_timed_out_page_keeps_the_pages_answered_and_a_rerun_asks_only_the_rest(review):
    from prefect.flow_runs import resume_flow_run

    layout, chosen = review
    # Long enough to answer page 1 from this test, short enough to let page 2 time out.
    runner = FlowInThread(review_id=chosen.review_id, page_size=2, page_timeout_seconds=15, home=str(layout.root))
    first = paused_run(chosen.review_id, "page-1", runner)
    resume_flow_run(first.id, run_input={"reviewer": "ana", "image_001": "blue", "image_002": "blue"})
    summary = runner.join()

    assert runner.error is None, runner.error
    assert (summary.answered_now, summary.pages_left, summary.timed_out_page) == (1, 1, 2)
    assert "1 left" in summary.message and "page 2 waited 15 s" in summary.message
    state = final_state(first.id)
    assert state.is_completed() and state.message == summary.message
    assert [page.page for page in answered_pages(layout.reviews, chosen.review_id)] == [1]

    again = FlowInThread(review_id=chosen.review_id, page_size=2, page_timeout_seconds=600, home=str(layout.root))
    rerun = paused_run(chosen.review_id, "page-2", again)
    assert rerun.id != first.id and list(input_schema(rerun)["properties"]) == ["reviewer", "image_003"]
    resume_flow_run(rerun.id, run_input={"reviewer": "ana", "image_003": "red"})
    summary = again.join()
    assert (summary.answered_before, summary.answered_now, summary.pages_left) == (1, 1, 0)
    assert [page.page for page in answered_pages(layout.reviews, chosen.review_id)] == [1, 2]

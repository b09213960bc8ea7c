"""The score-drops flow on a real Prefect server: ready drops scored and moved, the rest left."""

from __future__ import annotations

import pytest

from visionflow.errors import VisionflowError
from visionflow.flows.score import ScoringConfig
from visionflow.flows.score_drops import score_drops_flow
from visionflow.ledger.drops import DropOutputs
from visionflow.ledger.inbox import FAILURE_NOTE, InboxConfig

from tests.conftest import write_image
from tests.scoring_helpers import register_tiny_model

ONE_PROCESS = ScoringConfig.model_validate({"scan": {"workers": 1}, "score": {"workers": 1}})
PATIENT = InboxConfig(settle_seconds=3600)


def drop(home, name: str, images: int, ready: bool):
    folder = home / "drops" / "inbox" / name
    for index in range(images):
        write_image(folder / "sub" / f"{index}.png", (200, 30, 30), seed=index + 100 * len(name))
    if ready:
        (folder / "_READY").write_text("")
    return folder


@pytest.mark.usefixtures("prefect_server")
def test_ready_drops_are_scored_and_moved_to_done_while_unready_ones_wait(home):
    register_tiny_model(home / "models")
    drop(home, "monday", images=3, ready=True)
    drop(home, "still-copying", images=2, ready=False)
    result = score_drops_flow(inbox=PATIENT, scoring=ONE_PROCESS, home=str(home))
    assert list(result["drops"]) == ["monday"] and result["drops"]["monday"]["scored"] == 3
    assert (home / "drops" / "done" / "monday" / "sub" / "0.png").is_file()
    assert (home / "drops" / "inbox" / "still-copying").is_dir()
    assert (home / "predictions" / "monday" / "predictions").is_dir()
    assert score_drops_flow(inbox=PATIENT, scoring=ONE_PROCESS, home=str(home))["drops"] == {}


@pytest.mark.usefixtures("prefect_server")
def test_a_drop_that_cannot_be_scored_moves_to_failed_with_the_reason(home):
    drop(home, "orphan", images=1, ready=True)
    with pytest.raises(VisionflowError, match="1 of 1 drops failed"):
        score_drops_flow(inbox=PATIENT, scoring=ONE_PROCESS, home=str(home))
    note = home / "drops" / "failed" / "orphan" / FAILURE_NOTE
    assert "no champion model yet" in note.read_text()


@pytest.mark.usefixtures("prefect_server")
def test_a_drop_whose_outputs_are_busy_goes_back_to_the_inbox(home):
    register_tiny_model(home / "models")
    drop(home, "contended", images=1, ready=True)
    with DropOutputs(home / "predictions" / "contended").exclusive():
        result = score_drops_flow(inbox=PATIENT, scoring=ONE_PROCESS, home=str(home))
    assert result["drops"]["contended"]["moved_to"] == str(home / "drops" / "inbox" / "contended")
    assert (home / "drops" / "inbox" / "contended" / "sub" / "0.png").is_file()


@pytest.mark.usefixtures("prefect_server")
def test_a_drop_of_only_rejected_files_is_scored_and_done(home):
    register_tiny_model(home / "models")
    folder = home / "drops" / "inbox" / "junk"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not an image")
    (folder / "_READY").write_text("")
    result = score_drops_flow(inbox=PATIENT, scoring=ONE_PROCESS, home=str(home))
    assert result["drops"]["junk"]["rejected"] == 1 and result["drops"]["junk"]["scored"] == 0
    assert (home / "drops" / "done" / "junk" / "notes.txt").is_file()


@pytest.mark.usefixtures("prefect_server")
def test_a_drop_that_arrives_during_a_run_is_scored_by_that_run(home, monkeypatch):
    import visionflow.flows.score_drops as score_drops_module

    register_tiny_model(home / "models")
    drop(home, "first", images=2, ready=True)
    real_score_one_drop = score_drops_module.score_one_drop
    arrivals = []

    def score_and_deliver_another(*args, **kwargs):
        if not arrivals:  # While the first drop is scored, a second one becomes ready.
            arrivals.append(drop(home, "second", images=2, ready=True))
        return real_score_one_drop(*args, **kwargs)

    monkeypatch.setattr(score_drops_module, "score_one_drop", score_and_deliver_another)
    result = score_drops_flow(inbox=PATIENT, scoring=ONE_PROCESS, home=str(home))
    assert sorted(result["drops"]) == ["first", "second"]
    assert all(outcome["scored"] == 2 for outcome in result["drops"].values())
    assert not any((home / "drops" / "inbox").iterdir())

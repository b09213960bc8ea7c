"""The labels store and its contract: what an import takes, rejects, and holds out as a conflict."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from visionflow.home import resolve_home
from visionflow.images.imaging import ImageSpec
from visionflow.labels.labels_store import LabelRow, LabelsStore, import_labels
from visionflow.labels.review_sets import NOT_SURE

from tests.review_helpers import scored_drop, write_drop_images
from tests.scoring_helpers import CLASSES

SPEC = ImageSpec(12, 12, 3)
UNSURE = np.full((4, 3), 1 / 3, dtype=np.float32)


def _row(sha256=None, class_name="red", origin="row 2", **fields) -> LabelRow:
    return LabelRow(sha256=sha256, class_name=class_name, source="csv", origin=origin, **fields)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_label_for_a_scored_content_is_stored_with_a_copy_of_its_image(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    report = import_labels(layout, [_row(_sha(paths[0])), _row(path=str(paths[1]), class_name="blue")], CLASSES, SPEC)
    assert (report.accepted, report.rejected, report.snapshot.count) == (2, [], 2)
    paths[0].unlink()  # The drop may go: the store keeps the bytes training needs.
    with LabelsStore(layout) as store:
        contents = store.accepted()[0]
    assert {item.class_name for item in contents} == {"red", "blue"}
    for item in contents:
        assert hashlib.sha256(Path(item.image_file).read_bytes()).hexdigest() == item.sha256


def test_importing_the_same_labels_twice_adds_nothing(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    rows = [_row(_sha(path)) for path in paths]
    first = import_labels(layout, rows, CLASSES, SPEC)
    second = import_labels(layout, rows, CLASSES, SPEC)
    assert (first.accepted, second.accepted, second.already_stored) == (4, 0, 4)
    assert second.snapshot == first.snapshot


def test_each_broken_rule_is_a_rejection_with_its_reason_and_loses_nothing(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    never_scored = write_drop_images(tmp_path / "elsewhere", 1, seed=99)[0]
    broken = tmp_path / "drop" / "broken.png"
    broken.write_bytes(b"not an image")
    import_labels(layout, [_row(_sha(paths[0]))], CLASSES, SPEC)
    rows = [
        _row(_sha(paths[1]), class_name="purple", origin="row 2"),
        _row(path=str(never_scored), origin="row 3"),
        _row("0" * 64, origin="row 4"),
        _row("not-a-digest", origin="row 5"),
        _row(path=str(tmp_path / "missing.png"), origin="row 6"),
        _row(_sha(paths[2]), class_name=NOT_SURE, origin="row 7"),
    ]
    report = import_labels(layout, rows, CLASSES, SPEC)
    reasons = {rejection.origin: rejection.reason for rejection in report.rejected}
    assert "not one of the model's classes" in reasons["row 2"]
    assert "never scored" in reasons["row 3"] and "never scored" in reasons["row 4"]
    assert "not a sha256" in reasons["row 5"] and "cannot be read" in reasons["row 6"]
    assert report.not_labels == 1 and report.accepted == 0
    assert report.snapshot.count == 1  # The label stored before stays.


def test_a_content_that_no_longer_decodes_is_rejected(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    digest = _sha(paths[0])
    paths[0].write_bytes(paths[0].read_bytes()[:40])  # Cut short after scoring.
    report = import_labels(layout, [_row(digest), _row(path=str(paths[0]))], CLASSES, SPEC)
    assert "gone or changed" in report.rejected[0].reason
    assert "does not decode" in report.rejected[1].reason or "never scored" in report.rejected[1].reason


def test_two_classes_for_one_content_are_a_conflict_held_out_of_training(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    digest = _sha(paths[0])
    import_labels(layout, [_row(digest, reviewer="ana"), _row(_sha(paths[1]))], CLASSES, SPEC)
    report = import_labels(layout, [_row(digest, class_name="green", reviewer="ben")], CLASSES, SPEC)
    assert report.conflicts == [digest] and report.snapshot.conflicts == 1 and report.snapshot.count == 1
    with LabelsStore(layout) as store:
        assert {label.reviewer for label in store.conflicts()[digest]} == {"ana", "ben"}
        assert [item.sha256 for item in store.accepted()[0]] == [_sha(paths[1])]


def test_the_snapshot_digest_names_the_labels_taken(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    one = import_labels(layout, [_row(_sha(paths[0]))], CLASSES, SPEC).snapshot
    two = import_labels(layout, [_row(_sha(paths[1]))], CLASSES, SPEC).snapshot
    again = import_labels(layout, [_row(_sha(paths[1]), reviewer="someone else")], CLASSES, SPEC).snapshot
    assert one.digest != two.digest and two.digest == again.digest and again.count == 2


def _conflict(tmp_path):
    """A home where ana says red and ben says green of one scored content; returns (layout, its sha256)."""
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    digest = _sha(paths[0])
    import_labels(
        layout, [_row(digest, reviewer="ana"), _row(digest, class_name="green", reviewer="ben")], CLASSES, SPEC
    )
    return layout, digest


def test_the_latest_resolution_settles_a_conflict_and_every_label_stays(tmp_path):
    layout, digest = _conflict(tmp_path)
    with LabelsStore(layout) as store:
        assert list(store.conflicts()) == [digest] and store.accepted()[0] == []
        store.add(digest, LabelRow(sha256=digest, class_name="green", source="resolution", reviewer="cy", origin="x"))
        assert store.conflicts() == {} and [item.class_name for item in store.accepted()[0]] == ["green"]
        store.add(digest, LabelRow(sha256=digest, class_name="red", source="resolution", reviewer="cy", origin="x"))
        store.add(digest, LabelRow(sha256=digest, class_name="green", source="resolution", reviewer="cy", origin="x"))
        assert [item.class_name for item in store.accepted()[0]] == ["green"]  # The latest decides.
        assert len(store.labels([digest])) == 4  # ana's, ben's and cy's two resolutions all stay.


def test_a_labeller_who_corrects_an_answer_does_not_conflict_with_themself(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    digest = _sha(paths[0])
    import_labels(layout, [_row(digest, reviewer="ana")], CLASSES, SPEC)
    report = import_labels(layout, [_row(digest, class_name="green", reviewer="ana")], CLASSES, SPEC)
    assert report.conflicts == [] and report.snapshot.count == 1
    with LabelsStore(layout) as store:
        assert [item.class_name for item in store.accepted()[0]] == ["green"]
        assert len(store.labels([digest])) == 2  # The first answer stays stored.


def test_a_voice_disagreeing_after_a_resolution_reopens_the_conflict(tmp_path):
    layout, digest = _conflict(tmp_path)
    with LabelsStore(layout) as store:
        store.add(digest, LabelRow(sha256=digest, class_name="green", source="resolution", reviewer="cy", origin="x"))
    later = _row(digest, class_name="blue", reviewer="dan", labelled_at="2999-01-01T00:00:00+00:00")
    assert import_labels(layout, [later], CLASSES, SPEC).conflicts == [digest]


def test_a_label_still_counts_after_its_drop_moved(tmp_path):
    layout = resolve_home(tmp_path / "home")
    _, paths = scored_drop(layout, tmp_path / "drop", UNSURE)
    digest, old_path = _sha(paths[0]), str(paths[0])
    import_labels(layout, [_row(digest)], CLASSES, SPEC)  # Its bytes are kept from here on.
    (tmp_path / "drop").rename(tmp_path / "done")
    report = import_labels(layout, [_row(digest, path=old_path, reviewer="ana"), _row(_sha(tmp_path / "done" /
                           paths[1].name), path=str(paths[1]), reviewer="ana")], CLASSES, SPEC)  # fmt: skip
    assert report.accepted == 1 and "gone or changed" in report.rejected[0].reason  # Never kept, now unreadable.

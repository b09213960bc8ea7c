"""The review choice: least-margin contents first, a random control, each content once."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.errors import BadInputError
from visionflow.home import resolve_home
from visionflow.labels.review_sets import load_review_set
from visionflow.ledger.scored_rows import ScoredRows
from visionflow.tasks.score.choose_review import ReviewChoiceConfig, choose_review, choose_rows, margins

from tests.review_helpers import scored_drop


def _rows(probabilities: list[list[float]], sha256s: list[str] | None = None) -> ScoredRows:
    sha256s = sha256s or [f"{index:064x}" for index in range(len(probabilities))]
    return ScoredRows([f"f{i}.png" for i in range(len(sha256s))], sha256s,
                      np.asarray(probabilities, dtype=np.float32), ["a", "b", "c"])  # fmt: skip


def test_margin_is_best_minus_second_best():
    assert margins(np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]], dtype=np.float32)) == pytest.approx([0.2, 0.85])


def test_least_sure_come_first_then_a_random_control_from_the_rest():
    rows = _rows([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.1, 0.4], [0.34, 0.33, 0.33], [0.8, 0.1, 0.1]])
    chosen = choose_rows(rows, count=2, random=2, seed=0)
    assert chosen[:2] == [(3, "least-sure"), (1, "least-sure")]
    assert [reason for _, reason in chosen[2:]] == ["random", "random"]
    assert {index for index, _ in chosen[2:]} <= {0, 2, 4}
    assert choose_rows(rows, count=2, random=2, seed=0) == chosen  # The same seed draws the same control.


def test_each_content_is_chosen_once_whatever_its_copies():
    same = "f" * 64
    rows = _rows([[0.34, 0.33, 0.33], [0.34, 0.33, 0.33], [0.9, 0.05, 0.05]], [same, same, "e" * 64])
    chosen = choose_rows(rows, count=5, random=5, seed=1)
    assert sorted(index for index, _ in chosen) == [0, 2]


def test_choose_review_saves_a_set_of_the_drop_for_the_champion(tmp_path):
    layout = resolve_home(tmp_path / "home")
    probabilities = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]], np.float32)
    version, paths = scored_drop(layout, tmp_path / "drop-1", probabilities)
    review = choose_review(layout, str(tmp_path / "drop-1"), ReviewChoiceConfig(count=2, random=1))
    assert [item.path for item in review.items[:2]] == [str(paths[2]), str(paths[1])]
    assert review.items[0].top[0].class_name == "blue" and len(review.items[0].top) == 3
    assert review.model_version == version and review.least_sure == 2 and review.random == 1
    assert load_review_set(layout.reviews, review.review_id) == review
    by_name = choose_review(layout, "drop-1", ReviewChoiceConfig(count=1, random=0))
    assert by_name.drop == str((tmp_path / "drop-1").resolve())  # The report names the folder.


def test_a_drop_never_scored_is_refused_with_what_to_do(tmp_path):
    layout = resolve_home(tmp_path / "home")
    (tmp_path / "unscored").mkdir()
    with pytest.raises(BadInputError, match="score it first"):
        choose_review(layout, str(tmp_path / "unscored"), ReviewChoiceConfig())


def test_a_drop_scored_by_two_models_with_other_classes_reviews_the_champion_rows(tmp_path):
    import pyarrow.parquet as pq

    from visionflow.ledger.drops import DropOutputs, predictions_table

    layout = resolve_home(tmp_path / "home")
    scored_drop(layout, tmp_path / "drop", np.full((3, 3), 1 / 3, np.float32))
    other = predictions_table(["x.png"], ["a" * 64], np.array([[0.5, 0.5]], np.float32),
                              ["2026-12-07T09:00:00+00:00"], ["cat", "dog"], "v0000")  # fmt: skip
    pq.write_table(other, DropOutputs(layout.predictions / "drop").predictions / "part-00001.parquet")
    review = choose_review(layout, "drop", ReviewChoiceConfig(count=5, random=0))
    assert len(review.items) == 3 and "a" * 64 not in {item.sha256 for item in review.items}

"""The parity check of a float32 export and the accuracy gate of an int8 one, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.engines.engine_exports import ParityCheck
from visionflow.engines.parity import int8_verdict, parity_check, parity_verdict


def test_parity_check_counts_top1_agreement_and_the_largest_probability_difference():
    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]], dtype=np.float32)
    candidate = np.array([[0.6, 0.3, 0.1], [0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.5, 0.4, 0.1]], dtype=np.float32)
    check = parity_check(reference, candidate)
    assert check.images == 4
    assert check.labels_agree == pytest.approx(3 / 4)
    # Image 3's first probability moved from 0.3 to 0.5, the largest change.
    assert check.max_probability_difference == pytest.approx(0.2, abs=1e-7)


def test_parity_check_refuses_probabilities_of_different_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        parity_check(np.zeros((2, 3)), np.zeros((2, 4)))


def test_parity_check_of_no_images_agrees_on_nothing():
    check = parity_check(np.zeros((0, 3)), np.zeros((0, 3)))
    assert check.images == 0
    assert check.labels_agree == 0.0


def test_identical_or_nearly_identical_probabilities_pass():
    reference = np.random.default_rng(0).dirichlet(np.ones(5), size=2000).astype(np.float32)
    assert parity_verdict(parity_check(reference, reference)) == (
        True,
        "parity: top-1 agrees on 100.00% of 2000 test images, probabilities within 0.0e+00",
    )
    passed, reason = parity_verdict(parity_check(reference, reference + np.float32(5e-4)))
    assert passed, reason


@pytest.mark.parametrize(
    "check, says",
    [
        (ParityCheck(images=2000, labels_agree=0.9985, max_probability_difference=1e-6), "below the 99.9% agreement"),
        (ParityCheck(images=2000, labels_agree=1.0, max_probability_difference=1.5e-3), "more than the 1e-03"),
        (ParityCheck(images=0, labels_agree=0.0, max_probability_difference=float("inf")), "no test images"),
    ],
    ids=["agreement", "difference", "no-images"],
)
def test_parity_fails_below_the_agreement_above_the_difference_and_without_images(check, says):
    passed, reason = parity_verdict(check)
    assert passed is False
    assert says in reason


def test_parity_passes_at_exactly_the_agreement_and_difference_limits():
    passed, reason = parity_verdict(ParityCheck(images=1000, labels_agree=0.999, max_probability_difference=1e-3))
    assert passed, reason


def test_int8_passes_within_half_a_point_and_fails_beyond_it():
    passed, reason = int8_verdict(0.896, 0.900, 1000)  # 0.4 points lower.
    assert passed is True
    assert "within 0.5 points" in reason
    passed, reason = int8_verdict(0.894, 0.900, 1000)  # 0.6 points lower.
    assert passed is False
    assert "0.60 points lower, more than the 0.5 allowed" in reason


def test_an_int8_variant_more_accurate_than_float32_passes():
    assert int8_verdict(0.95, 0.90, 1000)[0] is True


def test_an_int8_variant_with_no_test_images_to_judge_it_by_fails():
    passed, reason = int8_verdict(0.0, 0.0, 0)
    assert passed is False and "no test images" in reason

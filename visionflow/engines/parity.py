"""Whether an engine predicts what the model predicts: the parity check an export must pass to score."""

from __future__ import annotations

import numpy as np

from visionflow.engines.engine_exports import ParityCheck

# An export scores only if its top-1 class agrees with the reference on this share of the test
# split's images and no class probability differs by more than MAX_PROBABILITY_DIFFERENCE.
MIN_LABEL_AGREEMENT = 0.999
MAX_PROBABILITY_DIFFERENCE = 1e-3
# An int8 variant scores only if its test accuracy is at most this far below the float32 model's, 0 to 1.
MAX_INT8_ACCURACY_DROP = 0.005


def parity_check(reference: np.ndarray, candidate: np.ndarray) -> ParityCheck:
    """How the candidate's probabilities (N x classes) compare with the reference's on the same images."""
    if reference.shape != candidate.shape:
        raise ValueError(f"cannot compare probabilities of shapes {reference.shape} and {candidate.shape}")
    if len(reference) == 0:
        return ParityCheck(images=0, labels_agree=0.0, max_probability_difference=float("inf"))
    agree = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    difference = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    return ParityCheck(images=len(reference), labels_agree=agree, max_probability_difference=difference)


def parity_verdict(check: ParityCheck) -> tuple[bool, str]:
    """(passed, the outcome in a sentence) of a float32 export's parity check."""
    facts = (
        f"top-1 agrees on {check.labels_agree:.2%} of {check.images} test images, probabilities within "
        f"{check.max_probability_difference:.1e}"
    )
    if check.images == 0:
        return False, "no test images to check parity on"
    if check.labels_agree < MIN_LABEL_AGREEMENT:
        return False, f"{facts}: below the {MIN_LABEL_AGREEMENT:.1%} agreement parity needs"
    if check.max_probability_difference > MAX_PROBABILITY_DIFFERENCE:
        return False, f"{facts}: more than the {MAX_PROBABILITY_DIFFERENCE:.0e} parity allows"
    return True, f"parity: {facts}"


def int8_verdict(int8_accuracy: float, fp32_accuracy: float, images: int) -> tuple[bool, str]:
    """(passed, the outcome in a sentence) of an int8 variant's accuracy gate on `images` test images."""
    if images == 0:
        return False, "no test images to measure the int8 accuracy on"
    drop = fp32_accuracy - int8_accuracy
    facts = f"test accuracy {int8_accuracy:.4f} against {fp32_accuracy:.4f} in float32"
    if drop > MAX_INT8_ACCURACY_DROP:
        return (
            False,
            f"{facts}: {drop * 100:.2f} points lower, more than the {MAX_INT8_ACCURACY_DROP * 100:.1f} allowed",
        )
    return True, f"{facts}, within {MAX_INT8_ACCURACY_DROP * 100:.1f} points"

"""The exports of a registered model: which inference engines can run it, from which files, how well.

Every registered model can also run on ONNX Runtime and OpenVINO from an ONNX file beside its
model.keras (visionflow/engines/onnx_export.py writes it). metadata.json records, per engine, the
file, its sha256, whether it passed its check (the same probabilities as Keras, or for an int8
variant nearly the same accuracy) and how fast it ran when exported. This module owns that record;
the registry stores it as ModelMetadata.exports and scoring reads it to choose an engine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from visionflow.errors import DamagedStateError

Engine = Literal["keras", "onnx", "openvino", "onnx-int8", "openvino-int8"]
# What a score run may ask for: an engine, or "auto" (the fastest export that passed its check, else Keras).
EngineChoice = Literal["auto", "keras", "onnx", "openvino", "onnx-int8", "openvino-int8"]
AUTO = "auto"
KERAS = "keras"
FP32_ENGINES = ("onnx", "openvino")  # Run the float32 file; each must pass parity with Keras.
INT8_ENGINES = ("onnx-int8", "openvino-int8")  # Run the int8 file; each must keep float32's accuracy.
# The ONNX files an export writes: both runtimes read the same file of a precision. A registered
# version re-exported keeps them under names that carry their digest (versioned_name), so a
# scoring run that read the previous record never opens a file that changed under it.
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"


class ParityCheck(BaseModel):
    """How an engine's probabilities compare with the reference's on the same images."""

    images: int  # Images compared.
    labels_agree: float  # Share of images with the same top-1 class, 0 to 1.
    max_probability_difference: float  # Largest absolute difference of any class probability.


class EngineExport(BaseModel):
    """One engine's export of a registered model."""

    engine: Engine  # The engine that runs it (never "keras": model.keras needs no export).
    file: str  # The ONNX file's name in the version folder.
    sha256: str  # The file's sha256; a file that differs is never used.
    passed: bool  # Whether it passed its check; only a passed export scores.
    reason: str  # The check's outcome, in a sentence.
    parity: ParityCheck | None = None  # Against the model's float32 Keras predictions on its test split.
    test_accuracy: float | None = None  # Share of the test split it classifies correctly, 0 to 1 (int8).
    images_per_second: float | None = None  # Images it predicted per second at export (one view, batch 256).
    machine: str | None = None  # The CPU that throughput was measured on.


class ModelExports(BaseModel):
    """Every export of a registered model, and what choosing among them needs."""

    flip_tta: bool  # Whether the model trained on mirrored images (flip test-time augmentation by default).
    engines: list[EngineExport] = []  # The exports made, passed or not.
    keras_images_per_second: float | None = None  # Keras' own predict at export, beside the engines'.
    exported_at: str | None = None  # When the last export was made, ISO 8601 in UTC.
    failure: str | None = None  # Why exporting failed, when no file could be made; None when it worked.

    def export_of(self, engine: str) -> EngineExport | None:
        """The export of one engine, or None when it was not made."""
        return next((export for export in self.engines if export.engine == engine), None)

    def fastest_passed(self, precision_variants: bool = False) -> EngineExport | None:
        """The passed float32 export that ran fastest at export (int8 too when precision_variants)."""
        candidates = [export for export in self.engines if export.passed and export.images_per_second]
        if not precision_variants:
            candidates = [export for export in candidates if export.engine in FP32_ENGINES]
        return max(candidates, key=lambda export: export.images_per_second, default=None)

    def files(self) -> set[str]:
        """The names of the files the exports run."""
        return {export.file for export in self.engines}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versioned_name(name: str, sha256: str) -> str:
    """model.onnx with digest abc... -> model-abc123456789.onnx."""
    stem, _, suffix = name.rpartition(".")
    return f"{stem}-{sha256[:12]}.{suffix}"


def read_checked_export(version_dir: Path, export: EngineExport, version: str) -> bytes:
    """The export's file, read once and returned only when its sha256 matches the record, so the bytes
    an engine loads are the bytes checked. Raises DamagedStateError (exit 6) when the file is missing
    or differs: a changed file is never used to score."""
    path = Path(version_dir) / export.file
    way_out = f"rebuild it from the checked model.keras with `visionflow models export {version}`"
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DamagedStateError(f"the exported model {path} ({export.engine}) is missing: {way_out}") from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != export.sha256:
        raise DamagedStateError(
            f"the exported model {path} ({export.engine}) has changed since it was exported (sha256 {actual[:12]}..., "
            f"recorded {export.sha256[:12]}...): it was not used; {way_out}"
        )
    return content

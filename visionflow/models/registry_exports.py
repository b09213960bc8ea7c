"""Exporting a registered version: made aside, checked, then swapped in whole under the registry's lock.

`visionflow models export VERSION` and a scoring run's first use of a model registered before it
was exported come here. The export is made in a staging folder beside the versions (no lock held
while it converts, checks and times, which takes seconds to a minute), then moved into the
version's folder under names that carry each file's digest, and the record switches to them in
one write of metadata.json. A scoring run that read the previous record keeps finding the files
it names until the swap, and never a file that changed under it; the files the new record no
longer names are removed after the swap.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from visionflow.engines.engine_exports import ModelExports, versioned_name
from visionflow.errors import BadInputError
from visionflow.images.splits import load_split_arrays, split_file
from visionflow.models.champion import champion_lock
from visionflow.models.model_export import ExportConfig, calibration_sample, export_model
from visionflow.models.registry import MODEL_FILE, find_model, load_checked_model, read_metadata, write_metadata


def export_registered(models_root: Path, version: str, config: ExportConfig, again: bool = True) -> ModelExports:
    """Export a registered version from its checked model.keras, parity checked on its own test split,
    and record the exports in its metadata.

    again=False keeps exports another process recorded meanwhile (two scoring runs meeting an
    unexported model export it once). Raises BadInputError when the version's test split is gone
    (parity cannot be checked without it), or its training split when int8 is asked for.
    """
    models_root = Path(models_root)
    record = find_model(models_root, version)
    metadata = read_metadata(record.folder)
    if metadata.exports is not None and not again:
        return metadata.exports
    test_path, train_path = _split_paths(version, metadata.dataset_dir, config.int8)
    images, labels, _ = load_split_arrays(test_path)
    calibration = calibration_sample(train_path, config) if config.int8 else None
    staging = models_root / f".staging-{os.getpid()}-export-{version}-{datetime.now(UTC).strftime('%H%M%S%f')}"
    staging.mkdir(parents=True)
    try:
        exports = export_model(load_checked_model(record), staging, images, labels, calibration, config)
        with champion_lock(models_root):
            current = read_metadata(record.folder)  # As it is now, under the lock.
            if current.exports is not None and not again:
                return current.exports
            exports = _move_in(exports, staging, record.folder)
            write_metadata(record.folder, current.model_copy(update={"exports": exports}))
            _remove_unnamed(record.folder, current.exports, exports)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return exports


def _split_paths(version: str, dataset_dir: str | None, int8: bool) -> tuple[Path, Path | None]:
    """The test split an export is checked on and the training split int8 is calibrated on; both must be there."""
    test_path = split_file(dataset_dir, "test") if dataset_dir else None
    if test_path is None or not test_path.is_file():
        raise BadInputError(
            f"model {version}'s test split ({test_path or 'not recorded'}) is not there, and its exports are checked "
            "on it: ingest the dataset it was trained on again (`visionflow ingest`), then export"
        )
    train_path = split_file(dataset_dir, "train")
    if int8 and not train_path.is_file():
        raise BadInputError(
            f"model {version}'s training split ({train_path}) is not there, and int8 is calibrated on it: ingest the "
            "dataset it was trained on again (`visionflow ingest`), or export without --int8"
        )
    return test_path, train_path


def _move_in(exports: ModelExports, staging: Path, folder: Path) -> ModelExports:
    """Move the staged files into the version's folder under names with their digests; the record naming them."""
    renamed = []
    for export in exports.engines:
        if not export.sha256:  # Never written (its quantisation failed): nothing to move.
            renamed.append(export)
            continue
        name = versioned_name(export.file, export.sha256)
        if (staging / export.file).is_file():
            os.replace(staging / export.file, folder / name)
        renamed.append(export.model_copy(update={"file": name}))
    return exports.model_copy(update={"engines": renamed})


def _remove_unnamed(folder: Path, previous: ModelExports | None, current: ModelExports) -> None:
    """Delete the export files the previous record named and the current one does not."""
    if previous is None:
        return
    for name in previous.files() - current.files() - {MODEL_FILE}:
        (folder / name).unlink(missing_ok=True)

"""Stage 0: resolving --data to an image folder (a folder, the digits demo, or CIFAR-10's cache)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionflow.errors import BadInputError
from visionflow.tasks.ingest.prepare_source import (
    CIFAR10_BATCHES,
    CIFAR10_CLASSES,
    demo_drop_dir,
    export_marker,
    find_cifar10_batches,
    prepare_source_task,
    read_cifar10_batch,
    resolve_source,
)


def write_cifar10_cache(keras_home: Path, images_per_batch: int = 4) -> Path:
    """Write tiny CIFAR-10 python batches where Keras keeps them, in CIFAR-10's own format."""
    folder = keras_home / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for names in CIFAR10_BATCHES.values():
        for name in names:
            data = generator.integers(0, 256, size=(images_per_batch, 3 * 32 * 32), dtype=np.uint8)
            batch = {b"data": data, b"labels": list(range(images_per_batch))}
            (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def test_a_folder_is_used_as_it_is(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=1)
    source = resolve_source(str(root), tmp_path / "sources")
    assert source.root == root and source.name == "images" and source.suggested_channels == 3


def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch, make_image_folder):
    monkeypatch.chdir(make_image_folder(layout="flat", per_class=1))  # A usable folder, which "" must not name.
    for empty in ("", "  "):
        with pytest.raises(BadInputError, match="--data is empty: give an image folder, 'cifar10' or 'demo'"):
            resolve_source(empty, tmp_path / "sources")


def test_a_missing_folder_explains_what_data_can_be(tmp_path):
    with pytest.raises(BadInputError, match="not a built-in source name"):
        resolve_source(str(tmp_path / "nowhere"), tmp_path / "sources")


def test_demo_exports_the_digits_once_as_grayscale_images(tmp_path):
    source = prepare_source_task.fn("demo", tmp_path / "sources")
    files = sorted(source.root.rglob("*.png"))
    drop_files = sorted(demo_drop_dir(tmp_path / "sources").rglob("*.png"))
    assert source.suggested_channels == 1 and len(files) == 1697 and len(drop_files) == 100
    assert {path.name.removeprefix("digit-") for path in drop_files}.isdisjoint(path.name for path in files)
    assert sorted(path.name for path in source.root.iterdir()) == [str(digit) for digit in range(10)]
    image = Image.open(files[0])
    assert image.mode == "L" and image.size == (8, 8)
    marker_time = export_marker(source.root).stat().st_mtime_ns
    resolve_source("demo", tmp_path / "sources")
    assert export_marker(source.root).stat().st_mtime_ns == marker_time, "a finished export is not redone"


def test_cifar10_is_read_from_keras_cache_and_exported_losslessly(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    batches = write_cifar10_cache(tmp_path / "keras")
    assert find_cifar10_batches() == batches
    images, labels = read_cifar10_batch(batches / "test_batch")
    assert images.shape == (4, 32, 32, 3) and list(labels) == [0, 1, 2, 3]

    source = resolve_source("cifar10", tmp_path / "sources", download=lambda: pytest.fail("must not download"))
    assert sorted(path.name for path in source.root.iterdir()) == ["test", "train"]
    assert len(list((source.root / "train").rglob("*.png"))) == 5 * 4
    exported = np.asarray(Image.open(source.root / "test" / CIFAR10_CLASSES[2] / "00000.png"))
    np.testing.assert_array_equal(exported, images[2])


def test_cifar10_download_failure_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))

    def offline_download() -> Path:
        raise OSError("network is unreachable")

    with pytest.raises(BadInputError) as error:
        resolve_source("cifar10", tmp_path / "sources", download=offline_download)
    message = str(error.value)
    assert "network is unreachable" in message and "cifar-10-batches-py" in message and "--data" in message


def test_a_batch_file_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        read_cifar10_batch(path)

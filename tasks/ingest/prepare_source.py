"""Stage 0 of ingestion: turn what the user named (--data) into an image folder on disk.

Three kinds of source, all ending as an ordinary image folder so that one ingestion path
serves them all:
- a folder path, used as it is;
- "cifar10": the CIFAR-10 python batches from Keras' standard cache, downloaded with Keras'
  own utility when absent, exported once as PNG files (lossless, so pixels are unchanged);
- "demo": scikit-learn's bundled handwritten digits (1,797 8x8 grayscale images), exported
  once as PNG files; it needs no download, so a fresh machine can run end to end. One image
  in 18 is held back as an unlabelled drop to score (sources/demo-drop).
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.errors import BadInputError
from visionflow.home import BUILT_IN_SOURCES
from visionflow.run_context import run_logger

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_BATCHES = {"train": [f"data_batch_{index}" for index in range(1, 6)], "test": ["test_batch"]}
DIGIT_NAMES = [str(digit) for digit in range(10)]  # Folder (class) name of each digit.
# One demo digit in this many is held back from training and exported as a drop to score.
DEMO_HOLDBACK_EVERY = 18


def export_marker(target: Path) -> Path:
    """The file written beside an exported folder once it is complete (not inside: it is no image)."""
    return target.with_name(target.name + ".complete")


@dataclass(frozen=True)
class Source:
    """An image folder ready for ingestion, and the settings its kind of data suggests."""

    name: str  # Short name used for output folders, e.g. "cifar10", "demo" or the folder's name.
    root: Path  # The image folder to ingest.
    suggested_channels: int  # 1 for grayscale data, 3 for colour.


def source_folders(data: str) -> dict[str, str]:
    """The folder parameter a run reads for --data: none for a built-in source, else the folder."""
    return {} if data in BUILT_IN_SOURCES else {"data": data}


def resolve_source(data: str, sources_dir: Path, download: Callable[[], Path] | None = None) -> Source:
    """Map --data to an image folder, exporting the built-in datasets under sources_dir once."""
    if not data.strip():  # An empty path would otherwise name the current folder.
        raise BadInputError("--data is empty: give an image folder, 'cifar10' or 'demo'")
    if data == "demo":
        return Source("demo", export_digits(sources_dir / "demo"), suggested_channels=1)
    if data == "cifar10":
        batches = find_cifar10_batches() or _download_cifar10(download)
        return Source("cifar10", export_cifar10(batches, sources_dir / "cifar10"), suggested_channels=3)
    folder = Path(data).expanduser()
    if not folder.exists():
        raise BadInputError(
            f"--data {data}: no such folder, and not a built-in source name (cifar10, demo); "
            "give a folder laid out as <class>/<images> or train/<class>/... and test/<class>/..."
        )
    return Source(folder.resolve().name or "data", folder, suggested_channels=3)


def keras_datasets_dir() -> Path:
    """Keras' standard dataset cache: $KERAS_HOME/datasets, or ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def find_cifar10_batches() -> Path | None:
    """The folder holding CIFAR-10's python batches in Keras' cache, if they are there."""
    cache = keras_datasets_dir()
    for candidate in (cache / "cifar-10-batches-py", cache / "cifar-10-batches-py-target" / "cifar-10-batches-py"):
        if all((candidate / name).is_file() for names in CIFAR10_BATCHES.values() for name in names):
            return candidate
    return None


def _download_cifar10(download: Callable[[], Path] | None) -> Path:
    """Fetch CIFAR-10 into Keras' cache with Keras' own utility, or explain what to do instead."""
    try:
        return (download or _keras_download)()
    except Exception as error:
        raise BadInputError(
            f"CIFAR-10 is not in Keras' cache ({keras_datasets_dir()}) and downloading it failed ({error}). "
            "Copy the extracted cifar-10-batches-py folder there, or pass --data with a folder of images."
        ) from None


def _keras_download() -> Path:
    """The same download keras.datasets.cifar10.load_data performs, into the same cache."""
    from keras.utils import get_file  # Imported here: TensorFlow takes seconds to import.

    folder = get_file(fname="cifar-10-batches-py-target", origin=CIFAR10_ORIGIN, extract=True, file_hash=CIFAR10_SHA256)
    return Path(folder) / "cifar-10-batches-py"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10's batch files that can rebuild NumPy arrays and nothing else.

    The batches are pickled dicts of arrays and lists; refusing every other global means a
    tampered file cannot run code.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")
        return super().find_class(module, name)


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch into (images N x 32 x 32 x 3 uint8, labels N)."""
    with open(path, "rb") as handle:
        batch = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[b"labels"], dtype=np.int64)


def export_cifar10(batches_dir: Path, target: Path) -> Path:
    """Export the batches as target/{train,test}/<class>/NNNNN.png, once."""
    if export_marker(target).exists():
        return target

    def write(staging: Path) -> None:
        for split, names in CIFAR10_BATCHES.items():
            counters = [0] * len(CIFAR10_CLASSES)
            for name in names:
                images, labels = read_cifar10_batch(batches_dir / name)
                for image, label in zip(images, labels, strict=True):
                    folder = staging / split / CIFAR10_CLASSES[label]
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image, mode="RGB").save(folder / f"{counters[label]:05d}.png")
                    counters[label] += 1

    return _export_once(target, write)


def export_digits(target: Path) -> Path:
    """Export scikit-learn's digits as target/<digit name>/NNNN.png (8x8 grayscale), once.

    Every DEMO_HOLDBACK_EVERY-th image is held back from the labelled folders and exported,
    without its label, as a drop to score (see demo_drop_dir): images the model never saw.
    """
    if export_marker(target).exists() and export_marker(demo_drop_dir(target.parent)).exists():
        return target
    from sklearn.datasets import load_digits  # Imported here: only the demo source needs it.

    digits = load_digits()
    # Digit images hold ink levels 0..16; scale them to the usual 0..255 range.
    pixels = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    held_back = np.arange(len(pixels)) % DEMO_HOLDBACK_EVERY == 0

    def write_labelled(staging: Path) -> None:
        for index in np.flatnonzero(~held_back):
            folder = staging / DIGIT_NAMES[digits.target[index]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[index], mode="L").save(folder / f"{index:04d}.png")

    def write_drop(staging: Path) -> None:
        # Two nested batches, as drops often arrive: scoring walks any depth.
        for position, index in enumerate(np.flatnonzero(held_back)):
            folder = staging / f"batch-{position % 2 + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[index], mode="L").save(folder / f"digit-{index:04d}.png")

    _export_once(demo_drop_dir(target.parent), write_drop)
    return _export_once(target, write_labelled)


def demo_drop_dir(sources_dir: Path) -> Path:
    """The drop of held-back demo digits, written beside the demo's labelled folders."""
    return Path(sources_dir) / "demo-drop"


def _export_once(target: Path, write: Callable[[Path], None]) -> Path:
    """Run write into a staging folder, mark it complete and move it into place."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    export_marker(target).write_text("complete\n")
    logger.info("exported source images to %s", target)
    return target


@task(name="prepare-source", cache_policy=NO_CACHE)
def prepare_source_task(data: str, sources_dir: Path) -> Source:
    """Prefect task: resolve --data to an image folder, exporting a built-in dataset when needed."""
    source = resolve_source(data, Path(sources_dir))
    run_logger(__name__).info("source %s: images in %s", source.name, source.root)
    return source

"""Shared fixtures: an isolated VISIONFLOW_HOME, tiny image folders made on the spot, and a real
Prefect server for the flow tests (started once per session, only when a test asks for it)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Everything the tests write, Prefect's database included, goes to one temporary home, set
# before Prefect is imported anywhere.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="visionflow-tests-"))
from visionflow.home import configure_environment  # noqa: E402

configure_environment(_SESSION_HOME)

from tests.postgres_helpers import postgres_server  # noqa: E402, F401  (a session fixture for the PostgreSQL tests)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
VISIONFLOW = [sys.executable, "-m", "visionflow"]  # The command as a user runs it.
SHARED_CIFAR10 = REPOSITORY_ROOT.parent / "shared" / "datasets" / "cifar10"


def write_image(path: Path, color: tuple[int, int, int], size: int = 12, mode: str = "RGB", seed: int = 0) -> Path:
    """Write a small image whose pixels differ by seed, so every file has its own sha256."""
    generator = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + generator.integers(-30, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


CLASS_COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


@pytest.fixture
def make_image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Build a labelled image folder: split layout (train/test/<class>) or flat (<class>/)."""

    def build(
        layout: str = "split",
        per_class: int = 8,
        test_per_class: int = 3,
        size: int = 12,
        mode: str = "RGB",
        extension: str = "png",
        name: str = "images",
    ) -> Path:
        root = tmp_path / name
        seed = 0
        for class_name, color in CLASS_COLORS.items():
            for index in range(per_class):
                folder = root / "train" / class_name if layout == "split" else root / class_name
                write_image(folder / f"{index:03d}.{extension}", color, size, mode, seed := seed + 1)
            if layout == "split":
                for index in range(test_per_class):
                    write_image(
                        root / "test" / class_name / f"{index:03d}.{extension}", color, size, mode, seed := seed + 1
                    )
        return root

    return build


@pytest.fixture(scope="session")
def prefect_server():
    """A real, temporary Prefect server for the whole session (about 15 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh VISIONFLOW_HOME for one test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(prefect_server, home):
    """Run the `visionflow` command against the test session's Prefect server, with its own home."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "VISIONFLOW_HOME": str(home)}
    environment.pop("PREFECT_HOME", None)

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*VISIONFLOW, *arguments], capture_output=True, text=True, env=environment, timeout=300, check=False
        )

    return run


def pytest_collection_modifyitems(config, items):
    """End-to-end tests on ../shared data skip cleanly when that data is absent."""
    if SHARED_CIFAR10.is_dir():
        return
    skip = pytest.mark.skip(reason=f"CIFAR-10 image folders not found at {SHARED_CIFAR10}")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)

"""The JPEG-quality benchmark's copies: every image encoded again at the quality and subsampling asked."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from tests.conftest import REPOSITORY_ROOT

sys.path.insert(0, str(REPOSITORY_ROOT / "benchmarks"))
from jpeg_quality_benchmark import parse_quality, reencode_dataset  # noqa: E402


def noisy_image(path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_every_image_is_copied_to_its_place_at_the_quality_and_subsampling_asked(tmp_path):
    source = tmp_path / "data"
    for index, relative in enumerate(["train/cat/a.png", "train/dog/b.jpg", "test/cat/c.png"]):
        noisy_image(source / relative, index)
    (source / "README.txt").write_text("not an image")
    sizes = {}
    for quality, subsampling in [(95, "444"), (25, "420")]:
        target = tmp_path / f"q{quality}"
        assert reencode_dataset(source, target, quality, subsampling, workers=1) == 3
        copies = sorted(path.relative_to(target).as_posix() for path in target.rglob("*.jpg"))
        assert copies == ["test/cat/c.jpg", "train/cat/a.jpg", "train/dog/b.jpg"]
        with Image.open(target / "train/cat/a.jpg") as copy:
            assert copy.format == "JPEG" and copy.size == (32, 32)
            assert JpegImagePlugin.get_sampling(copy) == {"444": 0, "420": 2}[subsampling]
        sizes[quality] = sum(path.stat().st_size for path in target.rglob("*.jpg"))
    assert sizes[25] < sizes[95] / 2, "a lower quality keeps less"


@pytest.mark.parametrize("text", ["100:420", "0:444", "50:411", "50", "high:420"])
def test_a_quality_outside_what_pillow_encodes_is_a_usage_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="QUALITY:SUBSAMPLING"):
        parse_quality(text)
    assert parse_quality("50:420") == (50, "420")


def test_a_missing_dataset_folder_exits_2_naming_it(tmp_path):
    command = [sys.executable, "benchmarks/jpeg_quality_benchmark.py", "--data", str(tmp_path / "nowhere"),
               "--qualities", "50:420"]  # fmt: skip
    result = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "is not a folder" in result.stderr

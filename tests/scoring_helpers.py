"""Helpers for the scoring tests: a registered model made on the spot, and a hostile drop.

The hostile drop holds what people really drop: every accepted format and mode, EXIF-rotated
photos, corrupt and truncated files, a text file named .png, a decompression bomb, symlinks in
and out of the drop, duplicate contents, deep nesting, unicode and spaces in names, hidden
files and folders, a folder named like an image, an empty file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from visionflow.images.image_profile import ImageProfile
from visionflow.models.champion import set_champion
from visionflow.models.registry import ModelMetadata, register
from visionflow.network.build_model import build_model
from visionflow.tasks.train.recipe.presets import PRESETS

CLASSES = ["blue", "green", "red"]
SHAPE = (12, 12, 3)


def register_tiny_model(models_root: Path, shape=SHAPE, classes=CLASSES, champion: bool = True) -> str:
    """Register an untrained tiny network (its predictions are arbitrary but valid); return its version."""
    model = build_model(PRESETS["tiny"].model, shape, len(classes))
    staging = Path(models_root).parent / "staging-model"
    staging.mkdir(parents=True, exist_ok=True)
    model.save(staging / "model.keras")
    profile = ImageProfile(
        images=100, channel_mean=[120.0] * shape[-1], channel_std=[60.0] * shape[-1],
        class_share={name: 1 / len(classes) for name in classes},
    )  # fmt: skip
    metadata = ModelMetadata(class_names=list(classes), input_shape=list(shape), training_profile=profile)
    version = register({"model.keras": staging / "model.keras"}, metadata, Path(models_root))
    if champion:
        set_champion(Path(models_root), version)
    return version


def _photo(seed: int, size=(20, 14), mode: str = "RGB") -> Image.Image:
    generator = np.random.default_rng(seed)
    image = Image.fromarray(generator.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8), mode="RGB")
    return image if mode == "RGB" else image.convert(mode)


def _save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def build_hostile_drop(root: Path, outside: Path) -> dict[str, str]:
    """Write the hostile drop under root; return each file's expected outcome by relative path:
    "predicted" or "rejected". outside is a folder beside the drop for symlink targets."""
    expected: dict[str, str] = {}

    def good(relative: str, image: Image.Image, **options) -> None:
        _save(image, root / relative, **options)
        expected[relative] = "predicted"

    def bad(relative: str, data: bytes) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        expected[relative] = "rejected"

    good("photo.jpg", _photo(1), quality=90)
    good("formats/image.png", _photo(2))
    good("formats/image.gif", _photo(3).convert("P"))
    good("formats/image.bmp", _photo(4))
    good("formats/image.tiff", _photo(5))
    good("formats/image.webp", _photo(6), lossless=True)
    good("modes/gray.png", _photo(7, mode="L"))
    good("modes/rgba.png", _photo(8, mode="RGBA"))
    good("modes/palette.png", _photo(9, mode="P"))
    good("modes/cmyk.jpg", _photo(10, mode="CMYK"))
    sixteen = Image.fromarray((np.random.default_rng(11).integers(0, 65535, (10, 10))).astype(np.uint16))
    good("modes/sixteen-bit.png", sixteen)
    exif = Image.Exif()
    exif[0x0112] = 6
    good("modes/rotated.jpg", _photo(12, size=(30, 10)), exif=exif.tobytes())
    good("a large photo.jpg", _photo(13, size=(640, 480)), quality=80)
    good("déjà vu/über café 写真.png", _photo(14))
    good("a/b/c/d/e/f/g/h/deep.png", _photo(15))
    good("folder.jpg/inside.png", _photo(16))
    good("copies/original.png", _photo(17))
    good("copies/same bytes, other name.png", _photo(17))
    good("copies/again/original.png", _photo(17))

    jpeg = io.BytesIO()
    _photo(18, size=(64, 64)).save(jpeg, format="JPEG")
    bad("broken/truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    bad("broken/random-bytes.jpg", np.random.default_rng(19).integers(0, 255, 2000, dtype=np.uint8).tobytes())
    bad("broken/text.png", b"this is not an image, only text in a file named .png\n")
    bad("broken/empty.jpg", b"")
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, format="PNG")  # 144 million pixels in a few KiB.
    bad("broken/bomb.png", bomb.getvalue())
    icon = io.BytesIO()
    _photo(21, size=(16, 16)).save(icon, format="ICO")  # Pillow reads icons; visionflow does not score them.
    bad("broken/icon.ico", icon.getvalue())
    bad(".hidden.jpg", jpeg.getvalue())
    bad(".cache/thumb.jpg", jpeg.getvalue())
    expected[".cache/"] = expected.pop(".cache/thumb.jpg")  # A hidden folder is one row, not entered.

    outside.mkdir(parents=True, exist_ok=True)
    _save(_photo(20), outside / "secret.png")
    os.symlink(outside / "secret.png", root / "link-out.png")
    expected["link-out.png"] = "rejected"
    os.symlink(root / "photo.jpg", root / "link-in.jpg")
    expected["link-in.jpg"] = "predicted"
    (root / "_READY").write_text("")  # The readiness marker is a signal, not an input.
    return expected

"""The single decode and resize path: formats, modes, EXIF orientation, resizing and rejected files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from visionflow.images.imaging import (
    ACCEPTED_FORMATS,
    DecodedImage,
    ImageRejected,
    ImageSpec,
    decode_image,
    pixels_to_array,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
QUADRANT_COLORS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (240, 220, 30)]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """Save an image in memory and return the file's bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, height: int, width: int, channels: int = 3, **spec_options) -> tuple[DecodedImage, np.ndarray]:
    """Decode bytes to the given shape and return the result with its pixels as a signed array."""
    spec = ImageSpec(height=height, width=width, channels=channels, **spec_options)
    decoded = decode_image(data, spec)
    assert len(decoded.pixels) == spec.pixel_bytes
    return decoded, pixels_to_array(decoded.pixels, spec).astype(int)


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random RGB pixels, which no two formats would agree on by accident."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def quadrants(size: int = 32) -> np.ndarray:
    """Four uniform colour blocks: exact in palette formats and nearly exact in lossy ones."""
    corners = np.array(QUADRANT_COLORS, np.uint8).reshape(2, 2, 3)
    return corners.repeat(size // 2, axis=0).repeat(size // 2, axis=1)


def halves(left: tuple[int, ...], right: tuple[int, ...], width: int = 40, height: int = 20) -> np.ndarray:
    """An image whose left half is one colour and whose right half is another."""
    pixels = np.zeros((height, width, len(left)), np.uint8)
    pixels[:, : width // 2], pixels[:, width // 2 :] = left, right
    return pixels


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int, rows: int) -> bytes:
    """A small 1-bit PNG claiming side x side pixels, holding `rows` compressed rows of zeros.

    Pillow takes seconds to save a 30000x30000 image, so the file is written by hand; the guard
    must refuse it from its header alone, so the rows after `rows` need not be there.
    """
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = zlib.compress(bytes(rows * (1 + (side + 7) // 8)), 9)
    ihdr, idat, iend = png_chunk(b"IHDR", header), png_chunk(b"IDAT", data), png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + iend


def exif_bytes(orientation: int) -> bytes:
    """An EXIF block holding only the orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_rgb_png_decodes_to_exactly_its_pixels():
    pixels = noise(32, 32)
    decoded, array = decode(encode(Image.fromarray(pixels), "PNG"), 32, 32)
    assert (decoded.format, decoded.mode, decoded.width, decoded.height) == ("PNG", "RGB", 32, 32)
    np.testing.assert_array_equal(array, pixels)


def test_jpeg_decodes_to_the_pixels_pillow_gives_for_it():
    data = encode(Image.fromarray(noise(32, 32)), "JPEG", quality=90)
    decoded, array = decode(data, 32, 32)
    assert decoded.format == "JPEG"
    np.testing.assert_array_equal(array, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize("channels", [3, 1])
def test_images_are_resized_to_the_spec_shape(channels):
    source = Image.fromarray(noise(48, 64))
    data = encode(source, "PNG")
    decoded, array = decode(data, 16, 16, channels)
    assert array.shape == (16, 16, channels)
    assert (decoded.width, decoded.height) == (64, 48)  # The source size, not the output size.
    expected = source.convert("RGB" if channels == 3 else "L").resize((16, 16), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(array.reshape(np.asarray(expected).shape), np.asarray(expected))


def test_uniform_colour_survives_resizing_and_grayscale_gives_its_luminance():
    data = encode(Image.new("RGB", (64, 48), (200, 100, 50)), "PNG")
    assert (decode(data, 16, 16)[1] == (200, 100, 50)).all()
    assert (decode(data, 16, 16, 1)[1] == Image.new("RGB", (1, 1), (200, 100, 50)).convert("L").getpixel((0, 0))).all()


@pytest.mark.parametrize(
    ("fmt", "options", "name", "tolerance"),
    [
        ("JPEG", {"quality": 95, "subsampling": 0}, "JPEG", 8),
        ("PNG", {}, "PNG", 0),
        ("GIF", {}, "GIF", 0),
        ("BMP", {}, "BMP", 0),
        ("TIFF", {}, "TIFF", 0),
        ("WEBP", {"lossless": True}, "WEBP", 0),
        ("PPM", {}, "PPM", 0),
    ],
)
def test_every_accepted_format_decodes_and_reports_its_name(fmt, options, name, tolerance):
    pixels = quadrants()
    decoded, array = decode(encode(Image.fromarray(pixels), fmt, **options), 32, 32)
    assert decoded.format == name
    assert np.abs(array - pixels).max() <= tolerance


def test_grayscale_l_and_one_bit_images():
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    decoded, array = decode(encode(Image.fromarray(gray, "L"), "PNG"), 16, 16, 1)
    assert decoded.mode == "L"
    np.testing.assert_array_equal(array[..., 0], gray)
    decoded, array = decode(encode(Image.fromarray(gray >= 128), "PNG"), 16, 16)
    assert decoded.mode == "1"
    np.testing.assert_array_equal(array, np.repeat(np.where(gray >= 128, 255, 0)[..., None], 3, axis=2))


@pytest.mark.parametrize(("mode", "opaque"), [("RGBA", (255, 0, 0, 255)), ("LA", (90, 255))])
def test_transparent_areas_become_white(mode, opaque):
    transparent = (0,) * len(opaque)  # Black, fully transparent.
    decoded, array = decode(encode(Image.fromarray(halves(opaque, transparent), mode), "PNG"), 20, 40)
    assert decoded.mode == mode
    assert (array[:, :20] == (opaque[:3] if mode == "RGBA" else (90, 90, 90))).all()
    assert (array[:, 20:] == WHITE).all()


@pytest.mark.parametrize("transparent_index", [None, 1])
def test_palette_images_with_and_without_transparency(transparent_index):
    image = Image.fromarray(np.repeat(np.array([[0] * 20 + [1] * 20], np.uint8), 20, axis=0), "P")
    image.putpalette([*RED, *BLUE])
    options = {} if transparent_index is None else {"transparency": transparent_index}
    decoded, array = decode(encode(image, "PNG", **options), 20, 40)
    assert decoded.mode == "P"
    assert (array[:, :20] == RED).all()
    assert (array[:, 20:] == (BLUE if transparent_index is None else WHITE)).all()


def test_cmyk_jpeg_decodes_to_rgb():
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    decoded, array = decode(data, 32, 32)
    assert decoded.mode == "CMYK"
    np.testing.assert_array_equal(array, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert np.abs(array - RED).max() <= 8


def test_sixteen_bit_png_is_scaled_not_clipped():
    gradient = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    decoded, array = decode(encode(Image.fromarray(gradient), "PNG"), 8, 8, 1)
    assert decoded.mode == "I;16"
    values = array.ravel()
    assert (values[0], values[-1]) == (0, 255)
    assert (np.diff(values) >= 0).all() and len(set(values)) > 32  # Monotonic, with no flat clipped run.


def test_32_bit_integer_and_float_tiffs_are_scaled_to_8_bits():
    integers = np.array([[0, 1000, 2000, 4000]], np.int32)
    decoded, array = decode(encode(Image.fromarray(integers), "TIFF"), 1, 4, 1)
    assert decoded.mode == "I"
    assert array.ravel().tolist() == [0, 64, 128, 255]
    floats = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    decoded, array = decode(encode(Image.fromarray(floats), "TIFF"), 1, 4, 1)
    assert decoded.mode == "F"
    assert array.ravel().tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize(
    ("orientation", "size", "first", "second", "axis"),
    [(None, (40, 20), RED, BLUE, "x"), (1, (40, 20), RED, BLUE, "x"), (3, (40, 20), BLUE, RED, "x")]
    + [(6, (20, 40), RED, BLUE, "y"), (8, (20, 40), BLUE, RED, "y")],
)
def test_jpeg_exif_orientation_is_applied(orientation, size, first, second, axis):
    options = {} if orientation is None else {"exif": exif_bytes(orientation)}
    decoded, array = decode(encode(Image.fromarray(halves(RED, BLUE)), "JPEG", quality=95, **options), size[1], size[0])
    assert (decoded.width, decoded.height) == size
    # Compare block centres, away from the colour edge where JPEG rings.
    a, b = (array[:, 5], array[:, -5]) if axis == "x" else (array[5, :], array[-5, :])
    assert np.abs(a - first).max() <= 40 and np.abs(b - second).max() <= 40


@pytest.mark.parametrize(
    "mode",
    ["RGB", "L", "RGBA", "LA", "I;16"],
)
def test_exif_rotation_swaps_the_reported_size_in_every_mode(mode):
    """A PNG with EXIF orientation 6 is rotated, and its reported size must be swapped too.

    Alpha compositing and 16-bit scaling make new images, so the swap must not depend on
    anything carried inside the image object.
    """
    gray = halves((255,), (0,))[..., 0]  # Left half white, right half black.
    image = Image.fromarray(gray.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(gray).convert(mode)
    decoded, array = decode(encode(image, "PNG", exif=exif_bytes(6)), 16, 16)
    assert (array[2, :] > 200).all() and (array[-2, :] < 50).all()  # The pixels are rotated in every mode...
    assert (decoded.width, decoded.height) == (20, 40)  # ...and so must be the reported source size.


def test_rotated_jpeg_keeps_the_detail_of_its_upright_twin():
    """A JPEG stored sideways with orientation 6 must decode like the same picture stored upright.

    The JPEG draft runs before EXIF rotation, so it must not pick a scale that the rotation
    would make narrower than the spec.
    """
    upright = Image.fromarray(np.repeat(np.where(np.arange(64) % 4 < 2, 255, 0).astype(np.uint8)[None], 128, axis=0))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # Orientation 6 turns it back upright.
    _, expected = decode(encode(upright, "JPEG", quality=95), 16, 32)
    _, actual = decode(encode(rotated, "JPEG", quality=95, exif=exif_bytes(6)), 16, 32)
    assert expected.std() > 60  # The 2-pixel stripes are still visible in the upright copy.
    assert np.abs(actual - expected).mean() < 16


def rejection(data: bytes, **spec_options) -> str:
    """The reason decode_image gives for refusing the bytes."""
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, ImageSpec(16, 16, 3, **spec_options))
    return str(caught.value)


def test_empty_and_non_image_bytes_are_rejected():
    assert "empty" in rejection(b"")
    assert "not an image" in rejection(b"name,label\ncat.jpg,cat\n" * 20)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_rejected(fmt):
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    reason = rejection(data[: len(data) // 2])
    assert "truncated" in reason or "corrupt" in reason


def test_too_many_pixels_is_rejected_before_decoding():
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    assert "too many pixels" in rejection(data, max_pixels=1000)
    # Without its pixel data the file could only fail as truncated if it were decoded.
    reason = rejection(data[:60], max_pixels=1000)
    assert "too many pixels" in reason and "2000x2000" in reason


# A complete 8000x8000 file is over visionflow's default limit; a 30000x30000 one is over Pillow's own.
@pytest.mark.parametrize(("side", "rows"), [(8000, 8000), (30000, 100)])
def test_decompression_bombs_are_rejected_with_the_default_limit(side, rows):
    data = bomb_png(side, rows)
    assert len(data) < 20_000
    assert "too many pixels" in rejection(data)


@pytest.mark.parametrize("fmt", sorted({"ICO", "PCX", "TGA"} - ACCEPTED_FORMATS))
def test_formats_pillow_opens_but_visionflow_refuses(fmt):
    data = encode(Image.fromarray(quadrants()), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt
    reason = rejection(data)
    assert "unsupported" in reason and fmt in reason


@pytest.mark.parametrize("source_mode", ["RGB", "L"])
@pytest.mark.parametrize(("source_size", "channels"), [((32, 32), 3), ((40, 30), 3), ((40, 30), 1), ((20, 50), 1)])
def test_the_fast_jpeg_path_gives_exactly_pillows_pixels(monkeypatch, source_mode, source_size, channels):
    """Small ordinary JPEGs skip Pillow's plugin; the pixels must not depend on which path ran."""
    generator = np.random.default_rng(7)
    noise = generator.integers(0, 256, size=(source_size[1], source_size[0], 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise).convert(source_mode), "JPEG")
    spec = ImageSpec(16, 16, channels)
    fast = decode_image(data, spec)
    monkeypatch.setattr("visionflow.images.imaging._decode_plain_jpeg", lambda data, spec: None)
    pillow = decode_image(data, spec)
    assert fast == pillow

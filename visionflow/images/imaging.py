"""The one image decode and resize path of visionflow.

Ingestion (training data) and scoring (image drops) both call `decode_image`, so the pixels a
model sees in production are produced by exactly the code that produced its training pixels.
This module imports only Pillow and NumPy: it runs inside worker processes, where importing
Prefect or TensorFlow would cost seconds per worker.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

# JPEG files start with the SOI marker; EXIF data sits in an APP1 segment headed "Exif\0\0"
# near the start of the file (within the first 64 KiB, the largest size of one segment).
JPEG_START = b"\xff\xd8"
EXIF_HEADER = b"Exif\x00\x00"
JPEG_HEADER_SPAN = 65_536

# EXIF tag 0x0112 holds the orientation a camera recorded; 1 means "as stored".
EXIF_ORIENTATION_TAG = 0x0112

# Pillow modes that carry one value per pixel at more than 8 bits; they are scaled to 8 bits
# before any colour conversion, because Pillow's own conversion clips them instead of scaling.
HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}

# Formats Pillow may identify that visionflow accepts as images. Anything else Pillow can open
# (EPS, PDF, ICNS, fonts...) is rejected so that only ordinary image files become pixels.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "MPO", "PPM", "DIB"})


# Largest source width*height decoded, for ingestion and scoring alike: a guard against
# decompression bombs (a small file that expands to gigabytes of pixels).
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageSpec:
    """The pixel layout every image is turned into (the model's input)."""

    height: int  # Output height in pixels.
    width: int  # Output width in pixels.
    channels: int  # 1 for grayscale ("L"), 3 for RGB.
    max_pixels: int = MAX_PIXELS  # Largest source width*height accepted; guards against bombs.

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (height, width, channels) shape of one decoded image."""
        return (self.height, self.width, self.channels)

    @property
    def pixel_bytes(self) -> int:
        """The number of uint8 values in one decoded image."""
        return self.height * self.width * self.channels


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image: its pixels at the spec's shape and what the source file was."""

    pixels: bytes  # Row-major height x width x channels uint8 values.
    format: str  # Pillow's name for the source format, e.g. "JPEG".
    width: int  # Source width in pixels, after EXIF orientation.
    height: int  # Source height in pixels, after EXIF orientation.
    mode: str  # Source Pillow mode, e.g. "RGB", "L", "P", "CMYK", "I;16".


class ImageRejected(ValueError):
    """A file that cannot become pixels; the message is the human-readable reason."""


def decode_image(data: bytes, spec: ImageSpec) -> DecodedImage:
    """Decode encoded image bytes into `spec`-shaped uint8 pixels.

    Steps, in order: identify the format, refuse oversized images before decoding them, decode
    fully (so truncated files are caught), apply EXIF orientation, scale high bit depths to 8
    bits, convert to RGB or grayscale, and resize to the spec with antialiasing.
    Raises ImageRejected with a reason a person can act on.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    fast = _decode_plain_jpeg(data, spec)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) for images between one and two times its own
            # pixel limit; the explicit max_pixels check below is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            source_format = image.format or "unknown"
            if source_format not in ACCEPTED_FORMATS:
                raise ImageRejected(f"unsupported image format {source_format}")
            width, height = image.size
            if width * height > spec.max_pixels:
                raise ImageRejected(
                    f"too many pixels: {width}x{height} exceeds the limit of "
                    f"{spec.max_pixels:,} pixels (raise max_pixels if this image is genuine)"
                )
            source_mode = image.mode
            if source_format == "JPEG" and width >= 2 * spec.width and height >= 2 * spec.height:
                # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; this keeps large photos
                # cheap while never going below the requested output size.
                # The requested size is square because EXIF orientation may still swap the sides.
                longest_side = max(spec.width, spec.height)
                image.draft("RGB" if spec.channels == 3 else "L", (longest_side, longest_side))
            image.load()
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"too many pixels (decompression bomb guard): {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image: no image format recognised the file's contents") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"corrupt or truncated image: {error}") from None

    try:
        image, sides_swapped = _apply_exif_orientation(image)
        image = _to_channels(image, spec.channels)
        if image.size != (spec.width, spec.height):
            image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    except (OSError, ValueError) as error:
        raise ImageRejected(f"unsupported image mode {source_mode}: {error}") from None
    return DecodedImage(
        pixels=image.tobytes(),
        format=source_format,
        width=height if sides_swapped else width,
        height=width if sides_swapped else height,
        mode=source_mode,
    )


def _decode_plain_jpeg(data: bytes, spec: ImageSpec) -> DecodedImage | None:
    """Fast path for the commonest input: a small, ordinary JPEG (no EXIF, YCbCr or grayscale).

    libjpeg-turbo, called through simplejpeg, decodes it about six times faster than Pillow's
    JPEG plugin, whose marker parsing runs in Python, and gives identical pixels (both use
    libjpeg-turbo's default accurate DCT and smooth upsampling; the tests hold it to that).
    Anything else, including every file that fails here, returns None and takes Pillow's path,
    which also words the rejection reasons. Large JPEGs go to Pillow too, whose draft mode
    decodes them at reduced scale.
    """
    if not data.startswith(JPEG_START) or EXIF_HEADER in data[:JPEG_HEADER_SPAN]:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray") or width * height > spec.max_pixels:
        return None
    if width >= 2 * spec.width and height >= 2 * spec.height:
        return None
    source_mode = "RGB" if colorspace == "YCbCr" else "L"
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB" if source_mode == "RGB" else "GRAY", strict=True)
    except ValueError:
        return None
    if (height, width, pixels.shape[-1]) == spec.shape:
        # Already the size and channels wanted: the decoder's buffer is the answer, no Pillow round trip.
        return DecodedImage(pixels=pixels.tobytes(), format="JPEG", width=width, height=height, mode=source_mode)
    image = Image.fromarray(pixels if source_mode == "RGB" else pixels[:, :, 0], mode=source_mode)
    image = _to_channels(image, spec.channels)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    return DecodedImage(pixels=image.tobytes(), format="JPEG", width=width, height=height, mode=source_mode)


def pixels_to_array(pixels: bytes, spec: ImageSpec) -> np.ndarray:
    """View decoded pixel bytes as a (height, width, channels) uint8 array without copying."""
    return np.frombuffer(pixels, dtype=np.uint8).reshape(spec.shape)


def _apply_exif_orientation(image: Image.Image) -> tuple[Image.Image, bool]:
    """Rotate or flip the image as its EXIF orientation says, so it looks as the camera saw it.

    Returns the image and whether its width and height were swapped (orientations 5 to 8).
    """
    if "exif" not in image.info and image.format != "TIFF":
        # Parsing EXIF costs half as much again as decoding a small JPEG; skip it when absent.
        return image, False
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # A malformed EXIF block must not make a readable image unusable.
        return image, False
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is None:
        return image, False
    return image.transpose(transpose), orientation in (5, 6, 7, 8)


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (3 channels) or grayscale "L" (1 channel)."""
    if image.mode in HIGH_DEPTH_MODES:
        image = _scale_to_8_bit(image)
    target_mode = "RGB" if channels == 3 else "L"
    if image.mode == target_mode:
        return image
    has_palette_alpha = image.mode == "PA" or (image.mode == "P" and "transparency" in image.info)
    if has_palette_alpha:
        # Palette images with transparency convert cleanly only through RGBA.
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        # Transparent areas become white, the background most viewers show them on.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(target_mode)


def _scale_to_8_bit(image: Image.Image) -> Image.Image:
    """Map 16-bit, 32-bit integer and float images onto 0..255 grayscale."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    elif image.mode == "F" and values.size and values.max() <= 1.0:
        scaled = values * 255.0
    else:
        top = values.max() if values.size else 1.0
        scaled = values * (255.0 / top) if top > 255 else values
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")

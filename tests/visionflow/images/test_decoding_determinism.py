"""The same file decodes to the same pixels whatever was decoded before it and in whichever process."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from PIL import Image

from visionflow.images.imaging import ImageSpec, decode_image

from tests.visionflow.images.test_imaging import encode, exif_bytes, noise


def test_decoding_is_deterministic_whatever_came_before_and_in_any_process():
    # Ingestion and scoring decode in different worker processes, each after other files: a
    # model must see the pixels it was trained on. One file per path: Pillow with EXIF rotation
    # and resizing, Pillow's PNG, and the fast JPEG path.
    files = [
        encode(Image.fromarray(noise(96, 80)), "JPEG", exif=exif_bytes(6)),
        encode(Image.fromarray(noise(30, 20, seed=1)), "PNG"),
        encode(Image.fromarray(noise(24, 24, seed=2)), "JPEG"),
    ]
    spec = ImageSpec(24, 24, 3)
    first = [decode_image(data, spec) for data in files]
    in_reverse = [decode_image(data, spec) for data in reversed(files)][::-1]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        elsewhere = list(pool.map(decode_image, files, [spec] * len(files)))
    assert len({decoded.pixels for decoded in first}) == len(files), "the files decode to different pixels"
    assert in_reverse == first, "a file decodes the same after other files"
    assert elsewhere == first, "a file decodes the same in another process"

"""The functions worker processes run: hashing, and decoding for ingestion and for scoring."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa
from PIL import Image

from visionflow.images.imaging import ImageSpec
from visionflow.images.safe_read import BLOCK_BYTES
from visionflow.images.workers import decode_chunk_to_shard, decode_for_scoring, hash_files_chunk, read_unchanged

from tests.conftest import write_image

SPEC = ImageSpec(8, 8, 3)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hashes_match_hashlib_for_small_and_block_read_files(tmp_path):
    root = str(tmp_path)
    small = tmp_path / "small.bin"
    small.write_bytes(b"visionflow")
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(BLOCK_BYTES + 12345))
    results = hash_files_chunk([str(small), str(large), str(tmp_path / "missing.bin")], root, 2 * BLOCK_BYTES)
    assert results[:2] == [(digest(small), None), (digest(large), None)]
    assert results[2][0] is None and results[2][1].startswith("unreadable: No such file")
    assert hash_files_chunk([str(large)], root, 1000)[0] == (None, f"file of {BLOCK_BYTES + 12345:,} bytes is over "
                                                             "the 1,000-byte limit for one image")  # fmt: skip


def test_a_file_that_changed_since_it_was_hashed_is_refused(tmp_path):
    root = str(tmp_path)
    path = tmp_path / "a.bin"
    path.write_bytes(b"before")
    before = digest(path)
    assert read_unchanged(str(path), root, before, 6, "scored") == (b"before", None)
    path.write_bytes(b"after!")
    assert read_unchanged(str(path), root, before, 6, "scored") == (None, "file changed while it was being scored")
    path.write_bytes(b"much longer than before")
    reason = read_unchanged(str(path), root, before, 6, "scored")[1]
    assert reason == "grew past 6 bytes while it was being read (while it was being scored)"
    assert read_unchanged(str(tmp_path / "gone"), root, before, 6, "scored")[1].startswith("unreadable")


def test_ingestion_decodes_good_files_into_a_shard_and_reports_the_rest(tmp_path):
    good = write_image(tmp_path / "good.png", (200, 10, 10), size=16)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    size = good.stat().st_size
    rows = [(7, str(good), digest(good), size), (9, str(corrupt), digest(corrupt), 48), (11, str(good), "0" * 64, size)]
    shard = tmp_path / "shard.arrow"
    outcomes, checksum = decode_chunk_to_shard((rows, str(shard)), SPEC, str(tmp_path))
    assert checksum == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert outcomes[0] == (7, "PNG", 16, 16, "RGB", None)
    assert outcomes[1][0] == 9 and outcomes[1][5] is not None and outcomes[1][1] is None
    assert outcomes[2] == (11, None, None, None, None, "file changed while it was being ingested")
    with pa.memory_map(str(shard)) as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.column("row_id").to_pylist() == [7]
    pixels = np.frombuffer(table.column("pixels")[0].as_py(), dtype=np.uint8).reshape(8, 8, 3)
    expected = np.asarray(Image.open(good).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
    assert abs(int(pixels.mean()) - int(expected.mean())) <= 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corrupt.png", "good.png", "shard.arrow"], (
        "no temporary file is left beside the shard"
    )


def test_scoring_decodes_by_content_and_rejects_with_a_reason(tmp_path):
    good = write_image(tmp_path / "good.jpg", (10, 200, 10), size=20)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    rows = [(str(good), digest(good), good.stat().st_size), (str(text), digest(text), text.stat().st_size)]
    outcomes = decode_for_scoring(rows, SPEC, str(tmp_path))
    assert outcomes[0][0] == digest(good) and len(outcomes[0][1]) == SPEC.pixel_bytes and outcomes[0][2] is None
    assert outcomes[1][0] == digest(text) and outcomes[1][1] is None and outcomes[1][2].startswith("not an image")

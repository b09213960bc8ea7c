"""Stage 2: decoding every readable file once, into pixel shards keyed by content and settings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionflow.tasks.ingest.decode_images import (
    DECODED_MANIFEST_NAME,
    SHARD_CHECKSUMS_NAME,
    DecodeConfig,
    decode_dataset,
    decode_dir_for,
    decode_images_task,
    decode_key,
    iterate_pixel_shards,
    verify_decode_dir,
)
from visionflow.tasks.ingest.scan_files import STATUS_OK, STATUS_QUARANTINED, ScanConfig, scan_dataset

CONFIG = DecodeConfig(image_size=8, channels=3, workers=1, files_per_chunk=4)


def pixels_by_path(decode_dir: Path, manifest) -> dict[str, np.ndarray]:
    result = {}
    for row_ids, pixels in iterate_pixel_shards(decode_dir):
        for row_id, value in zip(row_ids.to_pylist(), pixels.to_pylist(), strict=True):
            result[manifest.at[row_id, "path"]] = np.frombuffer(value, dtype=np.uint8).reshape(8, 8, 3)
    return result


def test_every_readable_file_is_decoded_to_the_spec(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=3, size=12)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    decoded = decode_dataset(manifest, root, CONFIG, tmp_path / "decoded")
    assert (decoded["status"] == STATUS_OK).all()
    assert set(decoded["format"]) == {"PNG"} and set(decoded["width"]) == {12} and set(decoded["mode"]) == {"RGB"}
    pixels = pixels_by_path(tmp_path / "decoded", decoded)
    assert len(pixels) == 9
    expected = np.asarray(Image.open(root / "red" / "000.png").resize((8, 8), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(pixels["red/000.png"], expected)


def test_undecodable_files_are_quarantined_and_the_rest_kept(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=3)
    (root / "red" / "notes.png").write_text("this is text, not a PNG")
    (root / "red" / "empty.jpg").write_bytes(b"")
    good = (root / "green" / "000.png").read_bytes()
    (root / "green" / "truncated.png").write_bytes(good[: len(good) // 2])
    manifest = scan_dataset(root, ScanConfig(workers=1))
    decoded = decode_dataset(manifest, root, CONFIG, tmp_path / "decoded").set_index("path")
    assert decoded.at["red/notes.png", "reason"].startswith("not an image")
    assert decoded.at["red/empty.jpg", "reason"].startswith("empty file")
    assert "truncated" in decoded.at["green/truncated.png", "reason"]
    assert (decoded["status"] == STATUS_QUARANTINED).sum() == 3
    assert (decoded["status"] == STATUS_OK).sum() == 9


def test_a_file_changed_after_scanning_is_not_trusted(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=2)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    Image.new("RGB", (12, 12), "white").save(root / "red" / "000.png")
    decoded = decode_dataset(manifest, root, CONFIG, tmp_path / "decoded").set_index("path")
    assert decoded.at["red/000.png", "reason"] == "file changed while it was being ingested"


def test_a_finished_decode_is_reused_not_redone(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=2)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    output = tmp_path / "decoded"
    decode_dataset(manifest, root, CONFIG, output)
    marker = output / DECODED_MANIFEST_NAME
    first_write = marker.stat().st_mtime_ns
    decode_dataset(manifest, root, CONFIG, output)
    assert marker.stat().st_mtime_ns == first_write
    assert not list(tmp_path.glob("decoded.partial*"))


def test_pixels_altered_in_the_cache_are_decoded_again_not_reused(make_image_folder, tmp_path, caplog):
    root = make_image_folder(layout="flat", per_class=2)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    output = tmp_path / "decoded"
    decode_dataset(manifest, root, CONFIG, output)
    assert verify_decode_dir(output) is None
    original = {int(row): bytes(pixels) for ids, shard in iterate_pixel_shards(output) for row, pixels in
                zip(ids.to_pylist(), shard.to_pylist(), strict=True)}  # fmt: skip
    shard = sorted((output / "pixels").glob("shard-*.arrow"))[0]
    first_pixels = next(iterate_pixel_shards(output))[1][0].as_py()
    data = bytearray(shard.read_bytes())
    start = data.index(first_pixels[:16])  # Inside the first image's pixels: the file stays valid.
    data[start : start + 8] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    assert verify_decode_dir(output) == f"pixel shard {shard.name} changed on disk after it was written"

    caplog.set_level(logging.WARNING)
    decode_dataset(manifest, root, CONFIG, output)
    assert "not reusing the decoded pixels" in caplog.text and "decoding again" in caplog.text
    again = {int(row): bytes(pixels) for ids, shard in iterate_pixel_shards(output) for row, pixels in
             zip(ids.to_pylist(), shard.to_pylist(), strict=True)}  # fmt: skip
    assert again == original and verify_decode_dir(output) is None


def test_a_cached_decode_without_checksums_is_not_trusted(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=2)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    output = tmp_path / "decoded"
    decode_dataset(manifest, root, CONFIG, output)
    (output / SHARD_CHECKSUMS_NAME).unlink()
    assert verify_decode_dir(output) == "it records no checksums of its pixel shards"
    decode_dataset(manifest, root, CONFIG, output)
    assert (output / SHARD_CHECKSUMS_NAME).exists()


def test_decode_key_changes_with_content_and_pixel_settings(make_image_folder):
    root = make_image_folder(layout="flat", per_class=2)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    key = decode_key(manifest, CONFIG)
    assert key == decode_key(manifest, CONFIG.model_copy(update={"workers": 2}))
    assert key != decode_key(manifest, CONFIG.model_copy(update={"image_size": 16}))
    assert key != decode_key(manifest, CONFIG.model_copy(update={"channels": 1}))
    assert key != decode_key(manifest.iloc[1:], CONFIG)


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_channels_other_than_one_or_three_are_refused(channels):
    with pytest.raises(ValueError, match="channels must be 1"):
        DecodeConfig(channels=channels)


def test_task_decodes_with_worker_processes_into_its_keyed_folder(make_image_folder, tmp_path):
    root = make_image_folder(layout="flat", per_class=4)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    config = CONFIG.model_copy(update={"workers": 2, "files_per_chunk": 3})
    decode_dir = decode_images_task.fn(manifest, root, config, tmp_path / "cache")
    assert Path(decode_dir) == decode_dir_for(manifest, config, tmp_path / "cache")
    assert (Path(decode_dir) / DECODED_MANIFEST_NAME).exists()
    assert len(list((Path(decode_dir) / "pixels").glob("shard-*.arrow"))) == 4

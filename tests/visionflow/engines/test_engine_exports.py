"""The exports record: file digests, the check that refuses a changed file, and choosing the fastest passed export."""

from __future__ import annotations

import hashlib

import pytest

from visionflow.engines.engine_exports import (
    FP32_FILE,
    INT8_FILE,
    EngineExport,
    ModelExports,
    file_sha256,
    read_checked_export,
    versioned_name,
)
from visionflow.errors import DamagedStateError


def export_record(engine: str, sha256: str = "0" * 64, passed: bool = True, speed: float | None = 100.0):
    """An export of engine, its file named as the engine's precision names it."""
    file = INT8_FILE if engine.endswith("-int8") else FP32_FILE
    return EngineExport(
        engine=engine, file=file, sha256=sha256, passed=passed, reason="made by a test", images_per_second=speed
    )


@pytest.fixture
def exported_file(tmp_path):
    """A version folder holding a model.onnx, and the export that records its true digest."""
    content = b"an ONNX file's bytes, for the digest only\n" * 1000
    (tmp_path / FP32_FILE).write_bytes(content)
    return tmp_path, export_record("onnx", sha256=hashlib.sha256(content).hexdigest())


def test_file_sha256_is_the_digest_of_the_whole_file_across_read_blocks(tmp_path):
    # Larger than the 1 MiB read block, so the digest spans several blocks.
    content = bytes(range(256)) * 5000
    path = tmp_path / "large.bin"
    path.write_bytes(content)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    (tmp_path / "empty.bin").write_bytes(b"")
    assert file_sha256(tmp_path / "empty.bin") == hashlib.sha256(b"").hexdigest()


def test_an_unchanged_export_file_is_read_once_and_its_checked_bytes_returned(exported_file):
    folder, export = exported_file
    assert read_checked_export(folder, export, "v0003") == (folder / FP32_FILE).read_bytes()


def test_a_versioned_name_carries_the_first_twelve_hex_digits_of_the_digest():
    assert versioned_name(FP32_FILE, "abcdef0123456789" * 4) == "model-abcdef012345.onnx"
    assert versioned_name(INT8_FILE, "0" * 64) == "model-int8-000000000000.onnx"


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda path: path.write_bytes(path.read_bytes()[:-1] + b"X"), "has changed since it was exported"),
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "has changed since it was exported"),
        (lambda path: path.unlink(), "is missing"),
    ],
    ids=["changed", "truncated", "missing"],
)
def test_a_changed_truncated_or_missing_export_file_is_refused_with_the_way_out(exported_file, damage, says):
    folder, export = exported_file
    damage(folder / FP32_FILE)
    with pytest.raises(DamagedStateError) as raised:
        read_checked_export(folder, export, "v0003")
    assert raised.value.exit_code == 6
    message = str(raised.value)
    assert str(folder / FP32_FILE) in message
    assert says in message
    assert "`visionflow models export v0003`" in message


def test_fastest_passed_takes_the_fastest_passed_float32_export_only():
    exports = ModelExports(
        flip_tta=False,
        engines=[
            export_record("onnx", speed=500.0),
            export_record("openvino", passed=False, speed=5000.0),  # Fastest, but refused.
            export_record("onnx-int8", speed=9000.0),  # Fastest passed, but int8.
            export_record("openvino-int8", speed=800.0),
        ],
    )
    assert exports.fastest_passed().engine == "onnx"
    assert exports.fastest_passed(precision_variants=True).engine == "onnx-int8"


def test_fastest_passed_is_none_without_a_passed_timed_float32_export():
    refused = ModelExports(flip_tta=True, engines=[export_record("onnx", passed=False), export_record("onnx-int8")])
    assert refused.fastest_passed() is None
    assert ModelExports(flip_tta=True).fastest_passed() is None
    assert ModelExports(flip_tta=True, engines=[export_record("openvino", speed=None)]).fastest_passed() is None


def test_export_of_finds_an_engine_or_none():
    onnx, openvino = export_record("onnx"), export_record("openvino", passed=False)
    exports = ModelExports(flip_tta=False, engines=[onnx, openvino])
    assert exports.export_of("openvino") == openvino
    assert exports.export_of("onnx") == onnx
    assert exports.export_of("onnx-int8") is None

"""How `models show` and `models export` describe a model's engines, from its exports record."""

from __future__ import annotations

from visionflow.cli.model_listing import export_lines
from visionflow.engines.engine_exports import EngineExport, ModelExports


def _export(engine: str, passed: bool, speed: float, file: str = "model.onnx") -> EngineExport:
    reason = "parity: fine" if passed else "top-1 agrees on 99.00%: below the 99.9% agreement parity needs"
    return EngineExport(
        engine=engine, file=file, sha256="0" * 64, passed=passed, reason=reason, images_per_second=speed
    )


def test_the_lines_name_what_auto_takes_and_why_an_engine_is_refused():
    exports = ModelExports(
        flip_tta=True,
        keras_images_per_second=2000.0,
        engines=[_export("onnx", False, 9000.0), _export("openvino", True, 3000.0),
                 _export("openvino-int8", True, 8000.0, "model-int8.onnx")],
    )  # fmt: skip
    lines = export_lines(exports)
    assert lines[0] == "engines: auto scores on openvino, keras 2,000 images/s", (
        "a refused or int8 export is not auto's"
    )
    assert "onnx (model.onnx): refused: top-1 agrees on 99.00%" in lines[1] and lines[1].endswith("9,000 images/s")
    assert lines[3].startswith("  openvino-int8 (model-int8.onnx): scores")


def test_a_model_never_exported_or_whose_export_failed_says_it_scores_on_keras_and_why():
    assert "not exported yet" in export_lines(None)[0] and "visionflow models export" in export_lines(None)[0]
    failed = ModelExports(flip_tta=False, failure="the ONNX export failed (ValueError: unsupported op)")
    assert export_lines(failed) == ["engines: keras only: the ONNX export failed (ValueError: unsupported op)"]

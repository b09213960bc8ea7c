"""One worker of a multi-worker training, run as its own process by test_distribution.py.

Usage: python -m tests.tasks.train.recipe.multi_worker_run PRESET RUN_DIR RESULT_JSON, with TF_CONFIG set.
It trains the preset for two epochs on the colour patches of test_train_model.py and writes the
TrainResult as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

from visionflow.tasks.train.recipe.presets import resolve_preset
from visionflow.tasks.train.train_model import train_model

from tests.tasks.train.test_train_model import TRAIN, VAL


def main(preset_name: str, run_dir: str, result_path: str) -> None:
    preset = resolve_preset(preset_name, {"epochs": 2, "batch_size": 16, "distribution": "multi-worker"})
    result = train_model(TRAIN, VAL, preset, Path(run_dir), num_classes=3)
    Path(result_path).write_text(result.model_dump_json())


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""The sides a benchmark compares: presets as they are, and variants of them.

A variant is a preset with some ModelConfig and TrainConfig fields changed, named on the command
line as `--variant NAME PRESET '{"model": {...}, "train": {...}}'`, for ablations and for settings
such as the batch size. The benchmarks that compare presets share this parsing, so a side means
the same thing in each.
"""

from __future__ import annotations

import argparse
import json


def add_side_arguments(parser: argparse.ArgumentParser, default_presets: list[str]) -> None:
    """--presets (as they are) and --variant (changed), repeatable."""
    parser.add_argument(
        "--presets", nargs="*", default=default_presets, help="presets as they are; none to run only variants"
    )
    parser.add_argument(
        "--variant",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "PRESET", "CHANGES"),
        help='one more side: PRESET with CHANGES, a JSON object {"model": {...}, "train": {...}}',
    )


def requested_sides(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> list[tuple[str, object]]:
    """(name, preset) of every side, in command-line order; a bad side ends the run with one line."""
    from pydantic import ValidationError

    from visionflow.tasks.train.recipe.presets import PRESETS

    requested = [(name, name, {}) for name in arguments.presets]
    for name, base, changes in arguments.variant:
        try:
            requested.append((name, base, json.loads(changes)))
        except json.JSONDecodeError as error:
            parser.error(f"--variant {name}: CHANGES is not JSON ({error})")
    if not requested:
        parser.error("nothing to run: name a preset with --presets or a side with --variant")
    unknown = sorted({base for _name, base, _changes in requested} - set(PRESETS))
    if unknown:
        parser.error(f"unknown preset {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    sides = []
    for name, base, changes in requested:
        if not isinstance(changes, dict) or set(changes) - {"model", "train"}:
            parser.error(f'--variant {name}: CHANGES must be a JSON object with "model" and/or "train" keys')
        try:
            sides.append((name, changed_preset(PRESETS[base], changes)))
        except ValidationError as error:
            reason = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
            parser.error(f"--variant {name}: {reason}")
        except ValueError as error:
            parser.error(f"--variant {name}: {error}")
    return sides


def changed_preset(preset, changes: dict):
    """The preset with changes["model"] and changes["train"] merged into its configs and validated.

    A field neither config has is refused, so a misspelt setting cannot pass as a side unchanged.
    """
    for part in ("model", "train"):
        config = getattr(preset, part)
        unknown = sorted(set(changes.get(part, {})) - set(type(config).model_fields))
        if unknown:
            raise ValueError(f"{type(config).__name__} has no field {', '.join(unknown)}")
    model = preset.model.model_validate({**preset.model.model_dump(), **changes.get("model", {})})
    train = preset.train.model_validate({**preset.train.model_dump(), **changes.get("train", {})})
    return preset.model_copy(update={"model": model, "train": train})

"""Each default lives in one place: the config or flow holds it, the CLI passes on only what was given."""

from __future__ import annotations

import inspect

import pytest
import typer

from visionflow.cli import app
from visionflow.cli.common import given
from visionflow.deployments.settings import ServeConfig
from visionflow.flows.score import score_flow
from visionflow.flows.train import train_flow
from visionflow.tasks.ingest.assign_splits import SplitConfig
from visionflow.tasks.ingest.decode_images import DecodeConfig
from visionflow.tasks.score.score_drop import ScoreConfig


def field_default(model, name: str):
    return model.model_fields[name].default


def parameter_default(flow, name: str):
    return inspect.signature(flow.fn).parameters[name].default


MIRRORED = {
    ("ingest", "image_size"): field_default(DecodeConfig, "image_size"),
    ("ingest", "max_pixels"): field_default(DecodeConfig, "max_pixels"),
    ("ingest", "val_fraction"): field_default(SplitConfig, "val_fraction"),
    ("ingest", "test_fraction"): field_default(SplitConfig, "test_fraction"),
    ("train", "data"): parameter_default(train_flow, "data"),
    ("train", "preset"): parameter_default(train_flow, "preset"),
    ("train", "image_size"): field_default(DecodeConfig, "image_size"),
    ("score", "model"): parameter_default(score_flow, "model"),
    ("score", "batch_size"): field_default(ScoreConfig, "batch_size"),
    ("serve", "port"): field_default(ServeConfig, "port"),
    ("serve", "train_data"): field_default(ServeConfig, "train_data"),
    ("serve", "train_cron"): field_default(ServeConfig, "train_cron"),
    ("serve", "score_every"): field_default(ServeConfig, "score_every_seconds"),
    ("serve", "settle_seconds"): field_default(ServeConfig, "settle_seconds"),
    ("deploy", "train_data"): field_default(ServeConfig, "train_data"),
    ("deploy", "train_cron"): field_default(ServeConfig, "train_cron"),
    ("deploy", "score_every"): field_default(ServeConfig, "score_every_seconds"),
}


def options() -> dict[tuple[str, str], object]:
    group = typer.main.get_command(app)
    return {
        (name, parameter.name): parameter for name, command in group.commands.items() for parameter in command.params
    }


@pytest.mark.parametrize(("command", "option"), sorted(MIRRORED))
def test_an_option_that_mirrors_a_setting_passes_nothing_unless_given_and_shows_the_settings_default(command, option):
    parameter = options()[(command, option)]
    assert parameter.default is None, "the config or flow holds the default, not the CLI"
    assert parameter.show_default == str(MIRRORED[(command, option)]), "--help shows the default that applies"


def test_given_keeps_only_what_the_user_gave():
    assert given(image_size=None, channels=1, workers=None, data="demo") == {"channels": 1, "data": "demo"}


def test_the_train_on_validation_flags_pass_nothing_unless_given_so_the_preset_decides():
    parameter = options()[("train", "train_on_validation")]
    assert parameter.default is None and parameter.show_default == "the preset's"
    assert parameter.opts == ["--train-on-validation"] and parameter.secondary_opts == ["--no-train-on-validation"]
    assert parameter_default(train_flow, "train_on_validation") is None
    context = typer.main.get_command(app).commands["train"].make_context("train", ["--no-train-on-validation"])
    assert context.params["train_on_validation"] is False
    assert typer.main.get_command(app).commands["train"].make_context("train", []).params["train_on_validation"] is None

"""`python -m visionflow ...`: the same as the `visionflow` command."""

from visionflow.cli import app

app(prog_name="visionflow")

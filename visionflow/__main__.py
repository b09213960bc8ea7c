"""`python -m visionflow ...`: the same as the `visionflow` command."""

from visionflow.cli.entry_point import main

main()

"""The `visionflow` command line: ingest, train, evaluate, score, review, labels, models, serve, deploy.

Heavy libraries (Prefect, pandas, TensorFlow) are imported inside the commands, after
VISIONFLOW_HOME and the offline settings are in place, and so that `--help` answers at once.
Exit codes and output conventions: see visionflow/cli/common.py.
"""

from visionflow.cli import labelling, models, pipelines, service
from visionflow.cli.common import app

__all__ = ["app", "labelling", "models", "pipelines", "service"]

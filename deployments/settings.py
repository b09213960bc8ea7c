"""The settings of visionflow's service and deployments, importable without Prefect.

`visionflow serve` must put the server's address in the environment before Prefect is first
imported, and `visionflow deploy` validates its options before it talks to a server, so these
settings live apart from the modules that import Prefect.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from visionflow.engines.engine_exports import EngineChoice
from visionflow.ledger.inbox import InboxConfig

# The deployments visionflow serves and deploys, in the order deployments/definitions.py builds them.
DEPLOYMENT_NAMES = ("train", "score-drops", "score", "ingest", "evaluate", "promote", "rollback", "review")


class ServeConfig(BaseModel):
    """How `visionflow serve` runs, and how the deployments of serve and deploy are scheduled."""

    port: int = Field(default=4200, ge=1, le=65535)  # Port of the Prefect server and UI it starts.
    train_data: str = "demo"  # What scheduled `train` runs train on: an image folder, "cifar10" or "demo".
    train_cron: str = "0 3 * * 1"  # When `train` runs: a cron expression (server time zone), Mondays 03:00.
    score_every_seconds: int = Field(default=300, ge=10)  # Interval of scheduled `score-drops` runs, in seconds.
    # A drop without _READY is ready after this quiet time, in seconds: the inbox's own default.
    settle_seconds: float = Field(default=InboxConfig.model_fields["settle_seconds"].default, ge=0)
    poll_seconds: float = Field(default=2.0, gt=0)  # How often the inbox watcher looks, in seconds.
    # Folders runs from the deployments may read besides the drop folders and train_data; a run
    # given a data or drop folder anywhere else is refused (see visionflow/access.py).
    allowed_roots: list[str] = Field(default_factory=list)
    # The engine `score-drops` and `score` runs predict on; None: the scoring config's own default (auto).
    score_engine: EngineChoice | None = None

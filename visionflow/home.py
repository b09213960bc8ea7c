"""Where visionflow keeps its files, and the environment Prefect and Great Expectations run in.

Everything visionflow writes lives under VISIONFLOW_HOME (default ./visionflow-home), Prefect's
own database and task results included; only the scoring ledger may live elsewhere, in a database
that VISIONFLOW_LEDGER_URL names. configure_environment must run before Prefect is
imported: Prefect reads these settings when it starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DEFAULT_HOME = "visionflow-home"

# A database URL for the scoring ledger that many runs share (postgresql+psycopg://user@host/db);
# unset, each home keeps its own SQLite ledger.
LEDGER_URL_VARIABLE = "VISIONFLOW_LEDGER_URL"

BUILT_IN_SOURCES = ("cifar10", "demo")  # Dataset names --data takes besides a folder (exported under sources/).

# Settings that keep Prefect and Great Expectations offline and quiet. Values a user has set in
# the environment win; these are only defaults.
OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # No usage heartbeat from the Prefect server.
    "DO_NOT_TRACK": "1",  # No client-side usage statistics (Prefect and other libraries).
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",  # No run telemetry.
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",  # No remote content in the UI.
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",  # No OS metrics collection in runs.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # Tasks run alone (tests, .fn) log locally.
    "GX_ANALYTICS_ENABLED": "false",  # No Great Expectations usage statistics.
    # Prefect's temporary server builds its database on first use, which takes longer than
    # Prefect's default 20 s wait on a busy two-core machine; 120 s, in seconds.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # TensorFlow's C++ info messages off; warnings and errors stay. The lines it prints while it
    # loads, before its logging is set up, show whatever this says (docs/getting-started.md).
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


@dataclass(frozen=True)
class HomeLayout:
    """The folders under VISIONFLOW_HOME, each for one kind of output."""

    root: Path

    @property
    def sources(self) -> Path:
        """Built-in datasets exported as image folders (cifar10, demo)."""
        return self.root / "sources"

    @property
    def decoded(self) -> Path:
        """Decoded pixel shards, one folder per content-and-settings key (the decode cache)."""
        return self.root / "cache" / "decoded"

    @property
    def datasets(self) -> Path:
        """Model-ready Parquet datasets, one folder per dataset fingerprint."""
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        """Training runs in progress or done: checkpoints, backups for resuming, history, curves."""
        return self.root / "runs"

    @property
    def models(self) -> Path:
        """The model registry: one folder per version, and champion.json."""
        return self.root / "models"

    @property
    def evaluations(self) -> Path:
        """Evaluations of registered models on labelled folders, one folder per model and data."""
        return self.root / "evaluations"

    @property
    def predictions(self) -> Path:
        """Scoring outputs, one folder per drop (predictions, rejections, reports)."""
        return self.root / "predictions"

    @property
    def ledger(self) -> Path:
        """The scoring ledger: which contents each model scored, which rows each drop holds.

        It lives outside predictions/, whose folders are named after drops.
        """
        return self.root / "ledger" / "scoring.sqlite"

    @property
    def ledger_url(self) -> str:
        """Where scoring runs keep their ledger: $VISIONFLOW_LEDGER_URL when set (one database that
        the runs of many homes and machines share; they must share the registered models too, as
        the ledger keys predictions by model version), else the SQLite file at ledger."""
        # Quoted, so that a folder name holding '?' or '%' stays part of the path.
        return os.environ.get(LEDGER_URL_VARIABLE) or f"sqlite:///{quote(str(self.ledger))}"

    @property
    def drops(self) -> Path:
        """The drop inbox and the folders drops move through (processing, done, failed)."""
        return self.root / "drops"

    @property
    def reviews(self) -> Path:
        """Review sets: the contents of a drop chosen for people to label, and their answers."""
        return self.root / "reviews"

    @property
    def labels(self) -> Path:
        """The labels store: labels people gave, and a copy of each labelled image."""
        return self.root / "labels"

    @property
    def prefect(self) -> Path:
        """Prefect's home: its SQLite database and persisted task results."""
        return self.root / "prefect"


def resolve_home(home: str | Path | None = None) -> HomeLayout:
    """The home given, else $VISIONFLOW_HOME, else ./visionflow-home; as an absolute path."""
    chosen = home or os.environ.get("VISIONFLOW_HOME") or DEFAULT_HOME
    return HomeLayout(Path(chosen).expanduser().resolve())


def configure_environment(home: str | Path | None = None) -> HomeLayout:
    """Point Prefect at VISIONFLOW_HOME and switch off telemetry; returns the home layout."""
    layout = resolve_home(home)
    layout.prefect.mkdir(parents=True, exist_ok=True)
    os.environ["VISIONFLOW_HOME"] = str(layout.root)
    os.environ.setdefault("PREFECT_HOME", str(layout.prefect))
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return layout

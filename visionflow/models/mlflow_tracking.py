"""MLflow, optional: each registered model mirrored as an MLflow run and model version.

Switched on by MLFLOW_TRACKING_URI (e.g. sqlite:///mlflow.db, or a team's tracking server)
with `pip install visionflow[mlflow]`. Each registration logs one MLflow run: the recipe's
parameters, every epoch's metrics, the test metrics, the curves, confusion matrix and metrics
files, and the model file; the run becomes a version of the registered model
`visionflow` (VISIONFLOW_MLFLOW_MODEL names another), tagged with visionflow's version, and the
`champion` alias follows visionflow's champion. visionflow's own registry stays the source of
truth: MLflow being down or misconfigured is logged and never fails a run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_NAME_VARIABLE = "VISIONFLOW_MLFLOW_MODEL"
DEFAULT_MODEL_NAME = "visionflow"
CHAMPION_ALIAS = "champion"
VERSION_TAG = "visionflow_version"  # The MLflow model version's tag naming visionflow's version.
EXPERIMENT = "visionflow"


def tracking_uri() -> str | None:
    """The MLflow tracking URI when MLflow mirroring is on and installed, else None (with a warning
    when the URI is set but the package is missing)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        logger.warning("MLFLOW_TRACKING_URI is set but MLflow is not installed: pip install 'visionflow[mlflow]'")
        return None
    return uri


def model_name() -> str:
    return os.environ.get(MODEL_NAME_VARIABLE, DEFAULT_MODEL_NAME)


def flatten(parameters: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow parameters: dotted names, string values."""
    flat: dict[str, str] = {}
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def mirror_registration(
    version: str,
    parameters: dict,
    history: dict[str, list[float]],
    test_metrics: dict[str, float],
    files: list[Path],
    model_file: Path,
    promoted: bool,
) -> str | None:
    """Log one registered version as an MLflow run and model version; the run id, or None when off."""
    uri = tracking_uri()
    if uri is None:
        return None
    try:
        return _log_and_register(uri, version, parameters, history, test_metrics, files, model_file, promoted)
    except Exception:  # MLflow mirrors visionflow's registry; it must never fail a training run.
        logger.warning("could not mirror %s to MLflow at %s", version, uri, exc_info=True)
        return None


def _log_and_register(uri, version, parameters, history, test_metrics, files, model_file, promoted) -> str:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=version) as run:
        mlflow.log_params(flatten(parameters))
        for name, values in history.items():
            for epoch, value in enumerate(values, start=1):
                mlflow.log_metric(name, float(value), step=epoch)
        mlflow.log_metrics({f"test_{name}": float(value) for name, value in test_metrics.items()})
        for path in files:
            if Path(path).is_file():
                mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.log_artifact(str(model_file), artifact_path="model")
        mlflow.set_tags({VERSION_TAG: version, "promoted": str(promoted)})
    client = MlflowClient(uri)
    name = model_name()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, description="Models registered by visionflow (its registry leads).")
    mirrored = client.create_model_version(
        name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags={VERSION_TAG: version}
    )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, mirrored.version)
    return run.info.run_id


def move_champion_alias(version: str) -> bool:
    """Point the MLflow `champion` alias at the model version mirroring visionflow's version.

    True when moved; False when MLflow is off, or that version was never mirrored (logged).
    """
    uri = tracking_uri()
    if uri is None:
        return False
    try:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        name = model_name()
        found = client.search_model_versions(filter_string=f"name = '{name}' and tags.{VERSION_TAG} = '{version}'")
        if not found:
            logger.warning("%s was registered before MLflow mirroring; the MLflow champion alias stays", version)
            return False
        client.set_registered_model_alias(name, CHAMPION_ALIAS, found[0].version)
        return True
    except Exception:  # The alias follows visionflow's champion; a failure must not undo the move.
        logger.warning("could not move the MLflow champion alias to %s", version, exc_info=True)
        return False

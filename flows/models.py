"""The registry flows: promote a registered model to champion, or roll the champion back.

promote: the gate (the candidate's test metrics against the floors and against the champion
measured on the same test split), or past it with force and a reason -> champion moved, history
appended, event emitted. rollback: back to the champion before. Both run from
`visionflow models promote|rollback` and as deployments from the UI.
"""

from __future__ import annotations

from prefect import flow

from visionflow.access import check_deployment_parameters
from visionflow.errors import BadInputError
from visionflow.home import resolve_home
from visionflow.tasks.train.evaluate_model import EvaluationConfig
from visionflow.tasks.train.gate_model import GateConfig
from visionflow.tasks.train.promote_model import ChampionMove, promote_model_task, rollback_champion_task


@flow(name="promote", flow_run_name="promote-{version}")
def promote_flow(
    version: str,
    force: bool = False,
    reason: str | None = None,
    gate: GateConfig | None = None,
    evaluation: EvaluationConfig | None = None,
    home: str | None = None,
) -> ChampionMove:
    """Make a registered version the champion, if the approval gate passes it.

    Args:
        version: The registered version to promote, such as "v0003".
        force: Promote past the gate; needs a reason.
        reason: Why, for the champion history (required with force).
        gate: What the candidate must reach (accuracy and per-class recall floors, tolerance).
        evaluation: How the champion is measured on the candidate's test split.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    check_deployment_parameters(home, {})
    if force and not (reason or "").strip():
        raise BadInputError("promoting past the gate needs a reason: add --reason TEXT")
    layout = resolve_home(home)
    force_reason = reason.strip() if force and reason else None
    return promote_model_task(
        layout.models, version, gate or GateConfig(), evaluation or EvaluationConfig(), force_reason
    )


@flow(name="rollback", flow_run_name="rollback")
def rollback_flow(reason: str | None = None, home: str | None = None) -> ChampionMove:
    """Return the champion to the one before it.

    Args:
        reason: Why, for the champion history.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    check_deployment_parameters(home, {})
    return rollback_champion_task(resolve_home(home).models, reason)

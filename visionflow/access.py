"""What a run started from a deployment may touch: the serving home, and folders under allowed roots.

A deployment can be started by anyone who reaches the Prefect API, with any parameters, so its
runs take folders only under the roots the operator allowed (VISIONFLOW_ALLOWED_ROOTS, which
`visionflow serve` sets to the drop inbox's folders, --train-data and each --allow-root) and
never another VISIONFLOW_HOME. Commands run from a shell are the user's own and are not limited.
"""

from __future__ import annotations

import os
from pathlib import Path

from visionflow.errors import BadInputError
from visionflow.home import HomeLayout, resolve_home

ALLOWED_ROOTS_VARIABLE = "VISIONFLOW_ALLOWED_ROOTS"  # Folders, separated by os.pathsep.


def started_from_deployment() -> bool:
    """True inside a flow run that a deployment created (served, scheduled, triggered, or from the UI)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def allowed_roots(layout: HomeLayout) -> list[Path]:
    """The folders runs from deployments may read: VISIONFLOW_ALLOWED_ROOTS, else the drop folders."""
    configured = os.environ.get(ALLOWED_ROOTS_VARIABLE, "")
    roots = [Path(root).expanduser().resolve() for root in configured.split(os.pathsep) if root]
    return roots or [layout.drops.resolve()]


def check_deployment_parameters(home: str | None, folders: dict[str, str]) -> None:
    """Refuse, in a run from a deployment, a home other than the serving one, or a folder
    parameter (name: value) outside the allowed roots. Nothing is checked in other runs."""
    if not started_from_deployment():
        return
    serving = resolve_home(None)
    if home and resolve_home(home).root != serving.root:
        raise BadInputError(
            f"home {home!r} is not this service's VISIONFLOW_HOME ({serving.root}): runs started from a "
            "deployment always use the serving home; leave the parameter empty"
        )
    roots = allowed_roots(serving)
    for name, value in folders.items():
        path = Path(value).expanduser().resolve()
        if not any(path == root or path.is_relative_to(root) for root in roots):
            shown = ", ".join(str(root) for root in roots)
            raise BadInputError(
                f"{name} {path} is outside the folders this service may read ({shown}); put it there, or "
                f"have the operator allow it (visionflow serve --allow-root, or {ALLOWED_ROOTS_VARIABLE})"
            )

"""Serve visionflow's deployments from this process: `python -m deployments.serve`.

Runs until interrupted (Ctrl-C). Point PREFECT_API_URL at a Prefect server first (for example
one started with `prefect server start`); the deployments then appear in its UI, ready to run.
"""

from __future__ import annotations

from flows.runtime import configure_environment


def main() -> None:
    configure_environment()
    from prefect import serve

    from deployments.definitions import all_deployments

    serve(*all_deployments())


if __name__ == "__main__":
    main()

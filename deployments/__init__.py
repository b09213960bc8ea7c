"""Prefect deployments of visionflow's flows, the service that serves them, and the drop inbox."""

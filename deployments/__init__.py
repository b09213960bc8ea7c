"""Prefect deployment definitions for visionflow's flows, and how to serve them."""

"""visionflow's pipeline stages: one module a stage, pure functions first, a Prefect task last."""

"""visionflow's pipeline stages, grouped by pipeline: ingest/, train/, score/."""

"""The flows: wiring of the stages in visionflow.tasks into Prefect flow runs."""

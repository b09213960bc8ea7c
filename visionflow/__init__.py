"""visionflow: workflow-orchestrated batch image classification on Prefect, Great Expectations and Keras.

The one import name of the project. Its parts, and which may import which:

- visionflow.tasks.ingest, .train, .score: the pipelines' stages, one module a stage;
- visionflow.flows: the flows that wire the stages together;
- visionflow.data_contracts: the Great Expectations suites and the one module that runs them;
- visionflow.deployments: the deployments, `visionflow serve` and the drop inbox;
- visionflow.cli: the `visionflow` command;
- the modules beside this file: what several pipelines share (split files, the model registry,
  the scoring ledger, prediction, file listing and hashing, image decoding, atomic writes,
  progress, errors, the home layout).

A stage imports the shared modules and stages of its own pipeline, never another pipeline's.
"""

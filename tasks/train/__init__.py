"""Training: train, evaluate, gate and register a model on a dataset's split files; one module a stage."""

"""Ingestion: a labelled image folder in, validated model-ready Parquet out; one module a stage."""

"""Scoring: one image drop in, predictions and rejections out, each file once; one module a stage."""

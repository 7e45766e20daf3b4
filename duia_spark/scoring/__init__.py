"""Batch scoring: candidates, Spark inference with the registered champion, ranking."""

"""Ingestion and the seven-stage aggregation pipeline."""

"""Cluster files: pydantic models with precise error paths, presets, and templates."""

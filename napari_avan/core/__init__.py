"""Numpy algorithms: synthetic data, tables, metrics (no torch, no GUI)."""

"""Blockwise detection and assignment on dask (arrives with the bulk-processing issue)."""

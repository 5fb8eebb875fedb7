"""Torch networks, training, inference and bundled weights (arrive with the networks issue)."""

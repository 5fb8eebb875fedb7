"""Sample data: synthetic EM volumes with exact ground truth."""

from __future__ import annotations

from napari_avan._napari._layers import LayerData, sample_layers

#: Seeds of the built-in samples (fixed, so every user sees the same volume).
DYADIC_SEED = 0
POLYADIC_SEED = 1


def _synthetic(polyadic: bool, seed: int) -> list[LayerData]:
    from napari_avan.core.synth import synthesize

    return sample_layers(synthesize(seed=seed, polyadic=polyadic))


def sample_dyadic() -> list[LayerData]:
    """Synthetic 32x256x256 EM (40x4x4 nm) with dyadic synapses and their ground truth."""
    return _synthetic(False, DYADIC_SEED)


def sample_polyadic() -> list[LayerData]:
    """Synthetic 32x256x256 EM (40x4x4 nm) with polyadic synapses (2-4 posts per cleft)."""
    return _synthetic(True, POLYADIC_SEED)

"""napari-avan: find synaptic clefts in 3D EM and assign their partners.

Importing the package is cheap: no torch, no Qt, no napari. Submodules:
``core`` (numpy algorithms, metrics, synthetic data), ``io`` (volumes and tables),
``models`` (torch networks), ``bulk`` (dask), ``cli`` and ``_napari`` (the plugin).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

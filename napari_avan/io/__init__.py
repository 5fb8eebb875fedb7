"""Volume and table I/O: zarr (v2, v3, OME-Zarr), HDF5/CREMI, npz, npy, TIFF, CSV/Parquet.

Volumes are named by a spec ``PATH`` or ``PATH:KEY`` (docs/architecture.md, volume specs)
and come back as :class:`~napari_avan.types.Volume` in (z, y, x) with the voxel size in nm.
Every writer is atomic and refuses to overwrite unless asked. Importing this package does not
import zarr, h5py, tifffile, dask or pandas; each is imported when first needed.
"""

from napari_avan.io.cremi import (
    CremiAnnotations,
    CremiData,
    cremi_annotations_from_edges,
    partners_from_cremi,
    read_cremi,
    write_cremi,
)
from napari_avan.io.samples import read_sample, write_sample
from napari_avan.io.spec import READ_FORMATS, VolumeSpec, detect_format, parse_spec
from napari_avan.io.tables import (
    check_partners,
    read_partners,
    read_table,
    write_table,
    write_tables,
)
from napari_avan.io.volumes import (
    WRITE_FORMATS,
    check_volume_shape,
    list_keys,
    read_labels,
    read_volume,
    voxel_size_of,
    write_volume,
)

__all__ = [
    "READ_FORMATS",
    "WRITE_FORMATS",
    "CremiAnnotations",
    "CremiData",
    "VolumeSpec",
    "check_partners",
    "check_volume_shape",
    "cremi_annotations_from_edges",
    "detect_format",
    "list_keys",
    "parse_spec",
    "partners_from_cremi",
    "read_cremi",
    "read_labels",
    "read_partners",
    "read_sample",
    "read_table",
    "read_volume",
    "voxel_size_of",
    "write_cremi",
    "write_sample",
    "write_table",
    "write_tables",
    "write_volume",
]

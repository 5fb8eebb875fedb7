"""From a cleft probability map to cleft labels: the post-processing of cleft detection.

Threshold, optional in-plane dilation to join fragments of one cleft, 6-connected
components, then a size filter; ids are renumbered 1..N in scan order.
"""

from __future__ import annotations

import numpy as np

from napari_avan.core.geometry import dilate_mask, inplane_structure
from napari_avan.types import AvanInputError, VoxelSize


def clefts_from_probability(
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    min_size: int = 50,
    join_radius_nm: float = 0.0,
    voxel_size_nm: VoxelSize | None = None,
) -> np.ndarray:
    """Label clefts in a (z, y, x) probability map.

    Args:
        prob: cleft probability in [0, 1].
        threshold: voxels above it are cleft.
        min_size: components with fewer voxels are dropped.
        join_radius_nm: if > 0, fragments closer than this in-plane (same section) are
            joined into one cleft; the labels keep only the thresholded voxels.
        voxel_size_nm: needed when ``join_radius_nm`` > 0.

    Returns:
        uint32 labels, 0 background, clefts 1..N.
    """
    import cc3d

    if prob.ndim != 3:
        raise AvanInputError(f"the probability map must be (z, y, x), got shape {prob.shape}")
    if not 0.0 <= threshold < 1.0:
        raise AvanInputError(f"threshold {threshold} must lie in [0, 1)")
    if min_size < 0:
        raise AvanInputError(f"min_size {min_size} must be zero or more")
    mask = np.asarray(prob) > threshold
    if join_radius_nm > 0:
        if voxel_size_nm is None:
            raise AvanInputError("joining fragments needs the voxel size (Z,Y,X nm)")
        joined = dilate_mask(mask, inplane_structure(join_radius_nm, voxel_size_nm, 1))
        labels = cc3d.connected_components(joined, connectivity=6, out_dtype=np.uint32)
        labels[~mask] = 0
    else:
        labels = cc3d.connected_components(mask, connectivity=6, out_dtype=np.uint32)
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = True
        labels[small[labels]] = 0
    # renumber 1..N in order of first appearance (scan order)
    ids, first = np.unique(labels.ravel(), return_index=True)
    foreground = ids != 0
    order = ids[foreground][np.argsort(first[foreground])]
    lookup = np.zeros(int(labels.max()) + 1, np.uint32)
    lookup[order] = np.arange(1, order.size + 1, dtype=np.uint32)
    return lookup[labels]


def known_clefts(labels: np.ndarray, unknown: np.ndarray | None) -> np.ndarray:
    """``labels`` without the predicted clefts touching voxels of unknown truth."""
    if unknown is None:
        return labels
    touching = np.setdiff1d(np.unique(labels[unknown]), [0])
    return np.where(np.isin(labels, touching), 0, labels) if touching.size else labels


def cleft_boundary(mask: np.ndarray) -> np.ndarray:
    """The boundary of a cleft mask, CleftNet's second label channel (Liu & Ji 2021): the
    cleft voxels with a non-cleft 4-neighbour in their section (z, y, x; in-plane, since
    sections are thick). The array's own edges are not a boundary (a training patch cuts
    clefts)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise AvanInputError(f"the cleft mask must be (z, y, x), got shape {mask.shape}")
    cross = np.zeros((1, 3, 3), bool)
    cross[0, 1, :] = cross[0, :, 1] = True
    return mask & ~ndimage.binary_erosion(mask, cross, border_value=1)

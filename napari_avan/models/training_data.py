"""Training data: the volume groups a model is trained and validated on.

A :class:`VolumeGroup` is one volume with its truth: image, neuron segmentation, cleft
labels, partners and voxel size. Groups are read from volume specs (:func:`read_groups`),
generated (:func:`synthetic_groups`, with the seeds of the training recipes) or cut in two
along an axis for validation (:func:`split_groups`). ``napari-avan train`` assembles its
data with these; :func:`napari_avan.models.train.prepare_volume` turns a group into a
training volume.

Importing this module is cheap: numpy, zarr and the readers load when a function needs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_avan.types import AvanInputError, Sample, VoxelSize, check_same_shape

if TYPE_CHECKING:
    import pandas as pd


#: Synthetic seeds of the training recipes, by polyadic; benchmarks hold out seeds from
#: HOLDOUT_SEED on.
SYNTH_TRAIN_SEED = {False: 1000, True: 1500}
SYNTH_VAL_SEED = {False: 2000, True: 2500}
HOLDOUT_SEED = 9000

_AXES = "zyx"


@dataclasses.dataclass(frozen=True)
class VolumeGroup:
    """One volume and its truth, (z, y, x) arrays of one shape.

    ``name`` says where it came from in messages and training logs (the image spec, a
    synthetic seed, a split like ``a.zarr [y<700]``).
    """

    name: str
    image: Any
    segmentation: Any
    clefts: Any
    partners: pd.DataFrame
    voxel_size_nm: VoxelSize

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape)


def read_groups(
    images: Sequence[str],
    segmentations: Sequence[str],
    clefts: Sequence[str],
    partners: Sequence[str | Path],
    voxel_size: VoxelSize | None = None,
    *,
    flag_prefix: str = "--",
) -> list[VolumeGroup]:
    """Read one group per image: the i-th image with the i-th segmentation, clefts, partners.

    Args:
        images, segmentations, clefts: volume specs (``PATH`` or ``PATH:KEY``).
        partners: partner CSVs (``cleft_id, pre_id, post_id``).
        voxel_size: for volumes whose files do not record theirs (nm).
        flag_prefix: how the command line spells the four lists (``--`` for ``--image``,
            ``--val-`` for ``--val-image``), for the error when their lengths differ.

    Raises:
        AvanInputError: lists of different lengths, unreadable or mismatched volumes,
            labels that are not integers, an unknown voxel size.
    """
    from napari_avan.io import read_labels, read_partners, read_volume, voxel_size_of

    lists = (images, segmentations, clefts, partners)
    if len({len(x) for x in lists}) != 1:
        names = ("image", "segmentation", "clefts", "partners")
        flags = ", ".join(f"{flag_prefix}{n}" for n in names)
        raise AvanInputError(f"give {flags} the same number of times (one group per volume)")
    groups = []
    for spec, seg_spec, cleft_spec, partner_path in zip(*lists, strict=True):
        image = read_volume(spec, voxel_size, lazy=False, role="image")
        seg = read_labels(seg_spec, "segmentation", voxel_size)
        cleft_vol = read_labels(cleft_spec, "clefts", voxel_size)
        check_same_shape(image=image, segmentation=seg, clefts=cleft_vol)
        voxel = voxel_size_of(spec, image, seg, cleft_vol)
        table = read_partners(partner_path)
        groups.append(VolumeGroup(spec, image.data, seg.data, cleft_vol.data, table, voxel))
    return groups


#: Synthetic training data: the fixed generator, v2 (options drawn per seed), both, or v2
#: with one annotation style for every volume (``v2-blob``, ``v2-sheet``).
SYNTHETIC_VARIANTS = ("v1", "v2", "v1+v2", "v2-blob", "v2-sheet")


def synthetic_group_name(seed: int, polyadic: bool, variant: str = "v1") -> str:
    """``synthetic-dyadic-seed1000``, ``synthetic-polyadic-seed1500``,
    ``synthetic-v2-dyadic-seed1000``, ``synthetic-v2-blob-dyadic-seed1000``."""
    kind = "polyadic" if polyadic else "dyadic"
    return (
        f"synthetic-{kind}-seed{seed}"
        if variant == "v1"
        else f"synthetic-{variant}-{kind}-seed{seed}"
    )


def _check_variant(variant: str) -> None:
    if variant not in SYNTHETIC_VARIANTS:
        raise AvanInputError(
            f"synthetic variant {variant!r} is not one of {', '.join(SYNTHETIC_VARIANTS)}"
        )


def synthetic_sample(
    seed: int, polyadic: bool, shape: tuple[int, int, int] | None = None, variant: str = "v1"
) -> Sample:
    """Synthetic volume ``seed`` of one generator variant (any of
    :data:`SYNTHETIC_VARIANTS` but ``v1+v2``); ``shape`` None keeps the generator's
    default (v2: 32 x 256 x 256)."""
    from napari_avan.core.synth import synthesize
    from napari_avan.core.synth_v2 import synthesize_v2

    _check_variant(variant)
    if variant == "v1+v2":
        raise AvanInputError("v1+v2 names two volumes per seed: ask for v1 or v2")
    if variant == "v1":
        overrides: dict[str, Any] = {"polyadic": polyadic}
        if shape is not None:
            overrides["shape"] = shape
        return synthesize(seed=seed, **overrides)
    style = variant.partition("-")[2] or None  # v2-blob, v2-sheet
    return synthesize_v2(seed, shape or (32, 256, 256), polyadic=polyadic, style=style)


def synthetic_groups(
    count: int,
    polyadic: bool,
    first_seed: int,
    shape: tuple[int, int, int] | None = None,
    variant: str = "v1",
) -> list[VolumeGroup]:
    """``count`` synthetic volumes of seeds ``first_seed``, ``first_seed + 1``, ...

    ``shape`` is (z, y, x) in voxels; None keeps the generator's default. ``variant``:
    ``v1`` the fixed generator, ``v2`` options drawn per seed
    (:mod:`napari_avan.core.synth_v2`), ``v1+v2`` ``count`` volumes of each (v1 first),
    ``v2-blob`` / ``v2-sheet`` v2 with that annotation style in every volume.
    """
    _check_variant(variant)
    if variant == "v1+v2":
        return [
            *synthetic_groups(count, polyadic, first_seed, shape, "v1"),
            *synthetic_groups(count, polyadic, first_seed, shape, "v2"),
        ]
    groups = []
    for seed in range(first_seed, first_seed + count):
        s = synthetic_sample(seed, polyadic, shape, variant)
        name = synthetic_group_name(seed, polyadic, variant)
        groups.append(
            VolumeGroup(name, s.image, s.segmentation, s.clefts, s.partners, s.voxel_size_nm)
        )
    return groups


def split_groups(
    groups: Sequence[VolumeGroup], axis: int, index: int, *, option: str = "--val-split"
) -> tuple[list[VolumeGroup], list[VolumeGroup]]:
    """Cut each group at ``index`` along ``axis`` (0 z, 1 y, 2 x): (before, from index on).

    The parts are named ``NAME [y<700]`` and ``NAME [y>=700]`` and keep the whole partner
    table (training drops the rows of clefts a part does not hold). ``option`` names the
    setting in the error for an index outside a volume.
    """
    if axis not in (0, 1, 2) or index < 1:
        raise AvanInputError(f"{option} must cut along z, y or x at an index of 1 or more")
    cut = _AXES[axis]
    before: list[VolumeGroup] = []
    after: list[VolumeGroup] = []
    for group in groups:
        size = group.shape[axis]
        if index >= size:
            raise AvanInputError(
                f"{option} index {index} is outside {group.name} (size {size} along {cut})"
            )
        lo = tuple(slice(0, index) if a == axis else slice(None) for a in range(3))
        hi = tuple(slice(index, None) if a == axis else slice(None) for a in range(3))
        before.append(_cut(group, lo, f"{group.name} [{cut}<{index}]"))
        after.append(_cut(group, hi, f"{group.name} [{cut}>={index}]"))
    return before, after


def _cut(group: VolumeGroup, box: tuple[slice, ...], name: str) -> VolumeGroup:
    return dataclasses.replace(
        group,
        name=name,
        image=group.image[box],
        segmentation=group.segmentation[box],
        clefts=group.clefts[box],
    )

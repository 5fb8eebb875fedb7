"""What training runs on and how: volumes at the working voxel size, settings, progress."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_avan.core.tables import as_partner_table
from napari_avan.models.augment import Augmentation
from napari_avan.models.inference import resample, to_float, working_shape
from napari_avan.models.pruners import DEFAULT_PRUNER_PATCH
from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, check_voxel_size

KINDS = ("clefts", "avan", "mask-pruner", "proximity-pruner")
DETECTOR_TRAIN_TARGETS = ("mask", "proximity", "cleftnet")
#: The detector's default working in-plane voxel size (clefts are tens of nm thick).
DETECTOR_INPLANE_NM = 8.0
DEFAULT_TRAIN_PATCH = {
    "clefts": (16, 96, 96),
    "avan": (8, 96, 96),
    "mask-pruner": DEFAULT_PRUNER_PATCH,
    "proximity-pruner": DEFAULT_PRUNER_PATCH,
}


@dataclass
class TrainingVolume:
    """One volume at the working voxel size: image in [0, 1], labels, true partners.

    ``unknown`` (bool, optional) marks voxels whose truth is not known (a proofreading
    session's unreviewed parts): the detector's loss ignores them, its negative patches are
    centred elsewhere, and validation drops predicted clefts touching them. ``negatives``
    (bool, optional) marks clefts a proofreader rejected: the detector draws hard negative
    patches around them.
    """

    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray
    partners: pd.DataFrame
    name: str = "volume"
    unknown: np.ndarray | None = None
    negatives: np.ndarray | None = None


def detector_voxel_size(data_voxel_nm: VoxelSize) -> VoxelSize:
    """Default detector working size: the data's, coarsened in-plane by an integer factor to
    about :data:`DETECTOR_INPLANE_NM` (4 nm -> 8 nm; 4.6 nm -> 9.2 nm; 8 nm stays)."""
    z, y, x = check_voxel_size(data_voxel_nm)
    factor = max(1, round(DETECTOR_INPLANE_NM / min(y, x)))
    return (z, y * factor, x * factor)


def prepare_volume(
    image: np.ndarray,
    segmentation: np.ndarray,
    clefts: np.ndarray,
    partners: pd.DataFrame,
    voxel_size_nm: VoxelSize,
    working_nm: VoxelSize,
    name: str = "volume",
    *,
    unknown: np.ndarray | None = None,
    negatives: np.ndarray | None = None,
) -> TrainingVolume:
    """Check a training volume and resample it to the working voxel size (``unknown`` and
    ``negatives``: see :class:`TrainingVolume`)."""
    check_same_shape(image=image, segmentation=segmentation, clefts=clefts)
    if np.ndim(image) != 3:
        raise AvanInputError(f"{name}: volumes must be (z, y, x), got shape {np.shape(image)}")
    for what, labels in (("segmentation", segmentation), ("clefts", clefts)):
        if np.asarray(labels[:1, :1, :1]).dtype.kind not in "ui":
            raise AvanInputError(f"{name}: the {what} must hold integer labels")
    voxel = check_voxel_size(voxel_size_nm)
    working = check_voxel_size(working_nm, what="working voxel size")
    shape = working_shape(np.shape(image), voxel, working)
    img = resample(to_float(np.asarray(image)), shape, order=1)
    seg = resample(np.asarray(segmentation), shape, order=0)
    clf = resample(np.asarray(clefts), shape, order=0)
    table = as_partner_table(partners)
    present = set(np.unique(clf).tolist()) - {0}
    table = table[table["cleft_id"].isin(present)].reset_index(drop=True)
    masks = [
        None if m is None else resample(np.asarray(m, dtype=np.uint8), shape, order=0) > 0
        for m in (unknown, negatives)
    ]
    return TrainingVolume(img, seg, clf, table, name, *masks)


@dataclass
class TrainSettings:
    """What to train and how. ``steps`` and ``minutes`` are budgets: the first to run out
    ends training (at least one must be given)."""

    kind: str
    steps: int | None = None
    minutes: float | None = None
    lr: float = 1e-3
    batch_size: int = 1
    seed: int = 0
    val_every: int = 100
    patch: tuple[int, int, int] | None = None
    widths: tuple[int, ...] | None = None
    voxel_size_nm: VoxelSize | None = None  # working size; set by the caller
    min_positive: int = 20
    polyadic: bool = False  # AVAN, pruners: choose the best model by polyadic edge F1 first
    #: detector: "mask" (cleft probability), "proximity" (signed) or "cleftnet" (the mask
    #: and the cleft boundary)
    target: str = "mask"
    #: keep the last weights, not the best validated ones (few validation clefts choose
    #: checkpoints by chance; validation still runs, for the log and the curve)
    keep_last: bool = False
    #: detector: learned queries of a feature augmentor at the U-Net's bottleneck
    #: (:class:`~napari_avan.models.networks.FeatureAugmentor`; 0: none)
    feature_augmentor: int = 0
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AvanInputError(f"training kind {self.kind!r} is not one of {KINDS}")
        if self.steps is None and self.minutes is None:
            raise AvanInputError("give a training budget: steps, minutes or both")
        if self.steps is not None and self.steps < 1:
            raise AvanInputError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise AvanInputError(f"minutes must be > 0, got {self.minutes}")
        if self.target not in DETECTOR_TRAIN_TARGETS:
            raise AvanInputError(f"target {self.target!r} is not one of {DETECTOR_TRAIN_TARGETS}")
        if self.target != "mask" and self.kind != "clefts":
            raise AvanInputError("a target other than mask is for the cleft detector only")
        queries = self.feature_augmentor
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 0:
            raise AvanInputError(
                f"feature_augmentor (learned queries) must be a whole number >= 0, got {queries!r}"
            )
        if queries and self.kind != "clefts":
            raise AvanInputError("the feature augmentor is for the cleft detector only")
        if self.batch_size < 1 or self.val_every < 1 or self.lr <= 0:
            raise AvanInputError("batch size and validation interval must be >= 1, lr > 0")

    @property
    def train_patch(self) -> tuple[int, int, int]:
        return self.patch or DEFAULT_TRAIN_PATCH[self.kind]


@dataclass
class TrainProgress:
    """One step: budget ``fraction`` used (0..1), the step's loss, validation if it ran."""

    step: int
    steps: int | None
    fraction: float
    loss: float
    elapsed_s: float
    validation: dict[str, float] | None = None
    best: dict[str, float] | None = None
    saved: bool = False

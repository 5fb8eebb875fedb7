"""Training examples drawn from the volumes (one sampler per kind of model).

- detector: patches alternate between positive (holding at least ``min_positive`` cleft
  voxels) and negative (none); random windows are proposed (positives around a random cleft
  voxel, jittered by up to half a patch) and rejected until they have the wanted class. The
  signed proximity detector draws the same patches with its proximity map as the target.
- AVAN: a random cleft with partners, a window around a random voxel of it (jitter inside
  the cleft); inputs are the image and that cleft's mask, targets the masks of its
  presynaptic and postsynaptic segments.
- pruners: candidate pairs (:mod:`napari_avan.models.pruners`), alternating true and false
  pairs, each centred on a random voxel of its cleft (mask) or near its pieces (proximity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_avan.models.inference import crop_window
from napari_avan.models.pruners import PrunerCandidates
from napari_avan.models.train.settings import TrainingVolume
from napari_avan.types import AvanInputError


def _start_around(centre: Sequence[int], patch: Sequence[int], shape: Sequence[int]) -> list[int]:
    """A window start placing ``centre`` inside, shifted into the volume where it fits."""
    starts = []
    for c, p, n in zip(centre, patch, shape, strict=True):
        s = int(c) - p // 2
        starts.append(int(np.clip(s, 0, n - p)) if n >= p else (n - p) // 2)
    return starts


class DetectorSampler:
    """Balanced cleft / background patches (rejection sampling).

    Volumes with an ``unknown`` mask (a proofreading session's unreviewed parts) give their
    negative patches centres in known voxels, half of them on rejected clefts (hard
    negatives) where the volume marks some, and a target of two channels: the cleft mask
    and the loss weight (0 where the truth is unknown).
    """

    def __init__(
        self,
        volumes: Sequence[TrainingVolume],
        patch: tuple[int, int, int],
        min_positive: int = 20,
        targets: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.volumes = list(volumes)
        self.patch = patch
        self.min_positive = min_positive
        self.targets = list(targets) if targets is not None else None  # else cleft masks
        self.cleft_voxels = [np.argwhere(v.clefts > 0) for v in self.volumes]
        if not any(len(c) for c in self.cleft_voxels):
            raise AvanInputError("the training volumes hold no cleft voxel: nothing to learn")
        sizes = np.array([v.image.size for v in self.volumes], float)
        self.weights = sizes / sizes.sum()
        self.hard = [
            np.argwhere(v.negatives) if v.negatives is not None else np.zeros((0, 3), int)
            for v in self.volumes
        ]
        self.weighted = any(v.unknown is not None for v in self.volumes)

    def _negative_centre(self, rng: np.random.Generator, k: int) -> list[int]:
        """A random voxel, known where the volume says which are; half the time a voxel of
        a rejected cleft, where there are some."""
        vol, hard = self.volumes[k], self.hard[k]
        if len(hard) and rng.random() < 0.5:
            return [int(v) for v in hard[rng.integers(len(hard))]]
        centre = [int(rng.integers(n)) for n in vol.image.shape]
        for _ in range(50):
            if vol.unknown is None or not vol.unknown[tuple(centre)]:
                break
            centre = [int(rng.integers(n)) for n in vol.image.shape]
        return centre

    def draw(self, rng: np.random.Generator, positive: bool) -> tuple[np.ndarray, np.ndarray]:
        patch = self.patch
        image = target = None
        for _ in range(50):
            k = int(rng.choice(len(self.volumes), p=self.weights))
            vol, voxels = self.volumes[k], self.cleft_voxels[k]
            if positive and len(voxels):
                centre = voxels[rng.integers(len(voxels))] + [
                    int(rng.integers(-(p // 2), p // 2 + 1)) for p in patch
                ]
            else:
                centre = self._negative_centre(rng, k)
            start = _start_around(centre, patch, vol.image.shape)
            target = crop_window(vol.clefts, start, patch, mirror=False) > 0
            image = crop_window(vol.image, start, patch, mirror=True)
            if (int(target.sum()) >= self.min_positive) == positive:
                break
        assert image is not None and target is not None
        if self.targets is not None:
            target = crop_window(self.targets[k], start, patch, mirror=False)
        target = target.astype(np.float32)
        if self.weighted:
            unknown = self.volumes[k].unknown
            known = (
                np.ones(patch, np.float32)
                if unknown is None
                else (crop_window(unknown, start, patch, mirror=False) == 0).astype(np.float32)
            )
            target = np.stack([target, known])
        return image, target


class AvanSampler:
    """Cleft-centred patches: (image, cleft mask) in, (pre mask, post mask) out."""

    def __init__(self, volumes: Sequence[TrainingVolume], patch: tuple[int, int, int]) -> None:
        self.volumes = list(volumes)
        self.patch = patch
        self.items: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        for k, vol in enumerate(self.volumes):
            coords = np.argwhere(vol.clefts > 0)
            ids = vol.clefts[tuple(coords.T)]
            for cleft_id, rows in vol.partners.groupby("cleft_id"):
                voxels = coords[ids == cleft_id]
                if len(voxels):
                    pre = np.unique(rows["pre_id"].to_numpy())
                    post = np.unique(rows["post_id"].to_numpy())
                    self.items.append((k, int(cleft_id), voxels, pre, post))  # type: ignore[arg-type]
        if not self.items:
            raise AvanInputError(
                "the training volumes hold no cleft with partners: check the partner table "
                "against the cleft labels"
            )

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k, cleft_id, voxels, pre, post = self.items[int(rng.integers(len(self.items)))]
        vol = self.volumes[k]
        start = _start_around(voxels[rng.integers(len(voxels))], self.patch, vol.image.shape)
        image = crop_window(vol.image, start, self.patch, mirror=True)
        mask = crop_window(vol.clefts, start, self.patch, mirror=False) == cleft_id
        seg = crop_window(vol.segmentation, start, self.patch, mirror=False)
        targets = np.stack([np.isin(seg, pre), np.isin(seg, post)]).astype(np.float32)
        return np.stack([image, mask.astype(np.float32)]), targets


class PrunerSampler:
    """Candidate pairs, true and false in turn, each with a jittered patch centre."""

    def __init__(self, candidates: Sequence[PrunerCandidates]) -> None:
        self.candidates = list(candidates)
        self.rows: dict[float, list[tuple[int, int]]] = {0.0: [], 1.0: []}
        for k, cands in enumerate(self.candidates):
            for label, rows in self.rows.items():
                rows += [(k, int(i)) for i in np.flatnonzero(cands.labels == label)]
        if not self.rows[1.0]:
            raise AvanInputError(
                "no candidate pair of the training volumes is a true edge: check the partner "
                "table against the cleft labels (and, for the proximity pruner, its detector)"
            )

    def draw(self, rng: np.random.Generator, positive: bool) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows[1.0] if positive or not self.rows[0.0] else self.rows[0.0]
        k, i = rows[int(rng.integers(len(rows)))]
        cands = self.candidates[k]
        x = cands.inputs(i, cands.training_centre(i, rng))
        return x, np.array([cands.labels[i]], np.float32)

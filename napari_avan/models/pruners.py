"""The pruner baselines of Turner et al. (2019): candidate pairs scored by a classifier.

- **Mask pruner**: the candidates of a cleft are the ordered pairs of segments around it
  (:func:`napari_avan.core.candidates.mask_pruner_candidates`); the classifier sees the
  image, the cleft mask and the masks of the candidate pre and post segments.
- **Proximity pruner** (Parag et al. 2018): a detector predicts the signed proximity
  (positive on the presynaptic side, negative on the postsynaptic side); its thresholded
  pieces, split by segment, are paired across neighbouring segments
  (:func:`napari_avan.core.candidates.proximity_pruner_candidates`); the classifier sees the
  image, the signed proximity and the two piece masks. A candidate belongs to the cleft with
  the most voxels in its bounding box.

Each candidate's input is a patch of the model's working voxel size centred on its cleft
(mask pruner) or on its box (proximity pruner), four channels, one logit out. A cleft's
partners: dyadic, the best-scoring candidate; polyadic, every candidate whose probability
reaches the threshold (the best one when none does).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from napari_avan.core.candidates import (
    cleft_of_candidates,
    mask_pruner_candidates,
    proximity_pieces,
    proximity_pruner_candidates,
)
from napari_avan.core.tables import BBOX_BEGIN_PREFIX, BBOX_END_PREFIX, from_xyz_columns
from napari_avan.models.checkpoint import (
    LoadedModel,
    architecture_of,
    build_network,
    load_tensors,
    unverified,
)
from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.models.inference import crop_window, predict, resample, to_float, working_shape
from napari_avan.models.networks import PrunerNet, ResidualSymmetricUNet
from napari_avan.types import (
    AvanInputError,
    VoxelSize,
    check_same_shape,
    check_voxel_size,
    one_line,
)

PRUNER_TASKS = ("mask-pruner", "proximity-pruner")
DEFAULT_PRUNER_PATCH = (8, 96, 96)  # as AVAN's, so both see the same context
#: Files of the proximity detector kept inside a proximity pruner's model folder.
PROXIMITY_WEIGHTS = "proximity.pt"
PROXIMITY_META = "proximity.json"
EDGE_COLUMNS = ("cleft_id", "pre_id", "post_id", "score")


def _start(centre: Sequence[float] | np.ndarray, patch: Sequence[int]) -> list[int]:
    return [round(c) - p // 2 for c, p in zip(centre, patch, strict=True)]


class PrunerCandidates:
    """The candidate pairs of one volume (at the model's working voxel size) and their inputs.

    Attributes:
        table: one row per candidate: ``cleft_id`` (0 when it lies at no cleft), ``pre_id``,
            ``post_id`` (and, for the proximity pruner, the pieces and box columns).
        labels: 1.0 where (cleft, pre, post) is a true edge of ``partners``, else 0.0.
    """

    def __init__(
        self,
        task: str,
        image: np.ndarray,
        segmentation: np.ndarray,
        clefts: np.ndarray,
        voxel_size_nm: VoxelSize,
        *,
        partners: pd.DataFrame | None = None,
        proximity: np.ndarray | None = None,
        patch: Sequence[int] = DEFAULT_PRUNER_PATCH,
    ) -> None:
        if task not in PRUNER_TASKS:
            raise AvanInputError(f"pruner task {task!r} is not one of {PRUNER_TASKS}")
        check_same_shape(image=image, segmentation=segmentation, clefts=clefts)
        self.task, self.patch = task, tuple(int(p) for p in patch)
        self.image = to_float(np.asarray(image))
        self.segmentation, self.clefts = np.asarray(segmentation), np.asarray(clefts)
        self.second: np.ndarray
        if task == "mask-pruner":
            table = mask_pruner_candidates(self.clefts, self.segmentation, voxel_size_nm)
            coords = np.argwhere(self.clefts > 0)
            ids = self.clefts[tuple(coords.T)]
            self.voxels: dict[int, np.ndarray] = {}
            for cleft_id in np.unique(table["cleft_id"].to_numpy()):
                pts = coords[ids == cleft_id]
                self.voxels[int(cleft_id)] = pts
            centres = []
            for cleft_id in table["cleft_id"].to_numpy():
                pts = self.voxels[int(cleft_id)]
                # the cleft voxel nearest the centroid, so the patch centre lies in the cleft
                centres.append(pts[np.argmin(((pts - pts.mean(0)) ** 2).sum(1))])
            self.centres = np.array(centres, float).reshape(-1, 3)
        else:
            if proximity is None:
                raise AvanInputError("the proximity pruner needs a signed proximity map")
            check_same_shape(image=image, proximity=proximity)
            self.second = np.asarray(proximity, np.float32)
            self.pieces = proximity_pieces(self.second, self.segmentation)
            table = proximity_pruner_candidates(
                self.second, self.segmentation, voxel_size_nm, pieces=self.pieces
            )
            table["cleft_id"] = cleft_of_candidates(table, self.clefts)
            begin = from_xyz_columns(table, BBOX_BEGIN_PREFIX).astype(float)
            end = from_xyz_columns(table, BBOX_END_PREFIX).astype(float)
            self.centres = ((begin + end - 1) / 2).reshape(-1, 3)
        self.table = table.reset_index(drop=True)
        self.labels = np.zeros(len(self.table), np.float32)
        if partners is not None and len(self.table):
            truth = set(
                zip(
                    partners["cleft_id"].astype(np.int64),
                    partners["pre_id"].astype(np.int64),
                    partners["post_id"].astype(np.int64),
                    strict=True,
                )
            )
            rows = zip(
                self.table["cleft_id"].astype(np.int64),
                self.table["pre_id"].astype(np.int64),
                self.table["post_id"].astype(np.int64),
                strict=True,
            )
            self.labels = np.array([r in truth for r in rows], np.float32)

    def __len__(self) -> int:
        return len(self.table)

    def inputs(self, k: int, centre: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """The (4, z, y, x) float32 input of candidate ``k`` (centred on ``centre`` if given)."""
        row = self.table.iloc[k]
        start = _start(self.centres[k] if centre is None else centre, self.patch)
        image = crop_window(self.image, start, self.patch, mirror=True)
        seg = crop_window(self.segmentation, start, self.patch, mirror=False)
        if self.task == "mask-pruner":
            second = crop_window(self.clefts, start, self.patch, mirror=False) == row["cleft_id"]
            pre, post = seg == row["pre_id"], seg == row["post_id"]
        else:
            second = crop_window(self.second, start, self.patch, mirror=False)
            pre = (
                crop_window(self.pieces.pre_labels, start, self.patch, mirror=False)
                == row["pre_piece"]
            )
            post = (
                crop_window(self.pieces.post_labels, start, self.patch, mirror=False)
                == row["post_piece"]
            )
        return np.stack([image, second, pre, post]).astype(np.float32)

    def training_centre(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """A jittered centre: a random voxel of the cleft (mask) or near the box centre."""
        if self.task == "mask-pruner":
            pts = self.voxels[int(self.table["cleft_id"].iloc[k])]
            return pts[rng.integers(len(pts))].astype(float)
        jitter = rng.integers(-2, 3, size=3) * np.array([0, 2, 2])
        return self.centres[k] + jitter


# --- the proximity detector ------------------------------------------------------------------


def predict_proximity(
    model: LoadedModel,
    image: np.ndarray,
    voxel_size_nm: VoxelSize,
    *,
    run: RunPlan | None = None,
) -> np.ndarray:
    """Signed proximity in [-1, 1] of a (z, y, x) image, at the image's shape."""
    from napari_avan.models.detect import detector_windows

    network = model.network
    meta = model.metadata
    if not isinstance(network, ResidualSymmetricUNet) or meta.get("target") != "proximity":
        raise AvanInputError("this model is not a signed proximity detector (target proximity)")
    voxel = check_voxel_size(voxel_size_nm)
    working = check_voxel_size(meta.get("voxel_size_nm", voxel), what="model voxel size")
    shape = working_shape(image.shape, voxel, working)
    work = resample(to_float(np.asarray(image)), shape, order=1)
    patch, overlap = detector_windows(meta, shape, network.config.divisor)
    out = predict(
        network,
        work,
        patch=patch,
        overlap=overlap,
        out_channels=1,
        run=run,
        activation="tanh",
    )[0]
    return resample(out, tuple(image.shape), order=1).astype(np.float32)


def proximity_files(model: LoadedModel) -> dict[str, bytes]:
    """The files that carry a proximity detector inside a proximity pruner's folder."""
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    torch.save(state, buffer)
    meta = {**model.metadata, "architecture": architecture_of(model.network)}
    return {
        PROXIMITY_WEIGHTS: buffer.getvalue(),
        PROXIMITY_META: (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
    }


def load_proximity(pruner: LoadedModel) -> LoadedModel:
    """The proximity detector stored inside a proximity pruner's folder (sha256 checked)."""
    if pruner.path is None:
        raise AvanInputError("this proximity pruner was not loaded from a folder")
    folder = pruner.path if pruner.path.is_dir() else pruner.path.parent
    weights, meta_file = Path(folder) / PROXIMITY_WEIGHTS, Path(folder) / PROXIMITY_META
    if not weights.is_file() or not meta_file.is_file():
        raise AvanInputError(
            f"{folder} lacks {PROXIMITY_WEIGHTS} / {PROXIMITY_META}: a proximity pruner folder "
            "holds its proximity detector; retrain it with napari-avan train proximity-pruner"
        )
    expected = pruner.metadata.get("proximity_sha256")
    if expected is None:
        raise unverified(Path(folder))
    state = load_tensors(weights, expected, what="weights")
    try:
        meta = json.loads(meta_file.read_text())
        network = build_network(meta["architecture"])
        network.load_state_dict(state)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise AvanInputError(
            f"cannot load the proximity detector in {folder}: {one_line(err)}"
        ) from err
    network.eval()
    return LoadedModel(network, meta)


# --- scoring and decisions -------------------------------------------------------------------


def iter_scores(
    model: LoadedModel,
    candidates: PrunerCandidates,
    *,
    run: RunPlan | None = None,
    batch_size: int = 16,
) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """Probabilities of every candidate; yields (done, total, None) per batch, then the scores."""
    network = model.network
    if not isinstance(network, PrunerNet):
        raise AvanInputError("this model is not a pruner")
    run = run or make_plan()
    prepared = run.prepare(network)
    total = len(candidates)
    scores = np.zeros(total, np.float32)
    with torch.inference_mode():
        for first in range(0, total, batch_size):
            ks = range(first, min(total, first + batch_size))
            batch = np.stack([candidates.inputs(k) for k in ks])
            with run.autocast():
                logits = prepared(run.tensor(torch.from_numpy(batch))).float()
            scores[first : first + len(ks)] = torch.sigmoid(logits).cpu().numpy()
            yield (first + len(ks), total, None)
    yield (total, total, scores)


def score_candidates(
    model: LoadedModel, candidates: PrunerCandidates, *, run: RunPlan | None = None
) -> np.ndarray:
    """Run :func:`iter_scores` to the end."""
    scores = np.zeros(0, np.float32)
    for _, _, result in iter_scores(model, candidates, run=run):
        if result is not None:
            scores = result
    return scores


def decide(
    table: pd.DataFrame,
    scores: np.ndarray,
    *,
    polyadic: bool = False,
    threshold: float = 0.5,
    cleft_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Edges (``cleft_id, pre_id, post_id, score``) from scored candidates.

    Dyadic: the best candidate of each cleft. Polyadic: every candidate of the cleft with a
    score >= ``threshold`` (the best one when none reaches it). Candidates at no cleft
    (``cleft_id`` 0) and clefts outside ``cleft_ids`` are left out; a (pre, post) pair met
    twice at one cleft (two pieces) keeps its best score.
    """
    frame = table[["cleft_id", "pre_id", "post_id"]].copy()
    frame["score"] = np.asarray(scores, float)
    frame = frame[frame["cleft_id"] != 0]
    if cleft_ids is not None:
        frame = frame[frame["cleft_id"].isin([int(c) for c in cleft_ids])]
    frame = frame.sort_values(["cleft_id", "score"], ascending=[True, False], kind="stable")
    frame = frame.drop_duplicates(["cleft_id", "pre_id", "post_id"])
    best = frame.drop_duplicates("cleft_id")
    if polyadic:
        keep = frame[frame["score"] >= threshold]
        frame = pd.concat([keep, best]).drop_duplicates(["cleft_id", "pre_id", "post_id"])
    else:
        frame = best
    frame = frame.sort_values(["cleft_id", "score"], ascending=[True, False], kind="stable")
    return frame.reset_index(drop=True)[list(EDGE_COLUMNS)]


@dataclass
class PrunerProgress:
    """``done`` of ``total`` candidates scored; ``edges`` is set on the last yield."""

    done: int
    total: int
    edges: pd.DataFrame | None = None
    candidates: PrunerCandidates | None = None
    scores: np.ndarray | None = None


def iter_assign_pruner(
    model: LoadedModel,
    image: np.ndarray,
    clefts: np.ndarray,
    segmentation: np.ndarray,
    voxel_size_nm: VoxelSize,
    *,
    run: RunPlan | None = None,
    polyadic: bool = False,
    threshold: float | None = None,
    cleft_ids: Sequence[int] | None = None,
    proximity: np.ndarray | None = None,
) -> Iterator[PrunerProgress]:
    """Partners of the clefts by a pruner model (its task picks mask or proximity).

    The volumes are resampled to the model's working voxel size (labels by nearest
    neighbour). The proximity pruner predicts the signed proximity with the detector stored
    in its folder unless ``proximity`` (at the image's shape) is given. ``threshold``
    (polyadic) defaults to the model's ``postprocess`` metadata, else 0.5.
    """
    task = model.metadata.get("task")
    if task not in PRUNER_TASKS:
        raise AvanInputError(f"this model's task is {task!r}, not one of {PRUNER_TASKS}")
    if np.ndim(image) != 3:
        raise AvanInputError(f"the image must be (z, y, x), got shape {np.shape(image)}")
    check_same_shape(image=image, clefts=clefts, segmentation=segmentation)
    voxel = check_voxel_size(voxel_size_nm)
    working = check_voxel_size(model.metadata.get("voxel_size_nm", voxel), what="model voxel size")
    run = run or make_plan()
    if threshold is None:
        threshold = float((model.metadata.get("postprocess") or {}).get("threshold", 0.5))
    if task == "proximity-pruner" and proximity is None:
        proximity = predict_proximity(load_proximity(model), image, voxel, run=run)
    shape = working_shape(np.shape(image), voxel, working)
    work_image = resample(to_float(np.asarray(image)), shape, order=1)
    work_seg = resample(np.asarray(segmentation), shape, order=0)
    work_clefts = resample(np.asarray(clefts), shape, order=0)
    work_prox = None if proximity is None else resample(proximity, shape, order=1)
    candidates = PrunerCandidates(
        task,
        work_image,
        work_seg,
        work_clefts,
        working,
        proximity=work_prox,
        patch=tuple(model.metadata.get("patch", DEFAULT_PRUNER_PATCH)),
    )
    scores = None
    for done, total, result in iter_scores(model, candidates, run=run):
        if result is None:
            yield PrunerProgress(done, total)
        else:
            scores = result
    assert scores is not None
    edges = decide(
        candidates.table, scores, polyadic=polyadic, threshold=threshold, cleft_ids=cleft_ids
    )
    yield PrunerProgress(len(candidates), len(candidates), edges, candidates, scores)


def assign_pruner(model: LoadedModel, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """Run :func:`iter_assign_pruner` to the end and return the edges."""
    edges = None
    for step in iter_assign_pruner(model, *args, **kwargs):
        edges = step.edges
    assert edges is not None
    return edges

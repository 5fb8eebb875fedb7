"""Training the cleft detector, AVAN and the pruner baselines (``napari-avan train``).

Volumes are resampled once to the model's working voxel size. Each step draws a batch of
patches, augments them (:mod:`napari_avan.models.augment`) and takes an Adam step whose
learning rate warms up and then follows a cosine to 5 % of its start over the budget (steps
or minutes, whichever ends first). Every ``val_every`` steps the model is scored on the
validation volumes through the same code that serves users (sliding-window detection;
AVAN assignment of every validation cleft); the best model so far is written to the output
folder with the training log, and a resumable training state rides beside it until the run
ends. :func:`iter_train` yields :class:`TrainProgress` after every step. What the output
folder holds is described in docs/architecture.md (model folders).

Sampling:
- detector: patches alternate between positive (holding at least ``min_positive`` cleft
  voxels) and negative (none); random windows are proposed (positives around a random cleft
  voxel, jittered by up to half a patch) and rejected until they have the wanted class.
- AVAN: a random cleft with partners, a window around a random voxel of it (jitter inside
  the cleft); inputs are the image and that cleft's mask, targets the masks of its
  presynaptic and postsynaptic segments.
- signed proximity detector (``clefts`` with ``target="proximity"``): detector patches,
  regressing Parag et al.'s signed proximity through a tanh.
- pruners: candidate pairs (:mod:`napari_avan.models.pruners`), alternating true and false
  pairs, each centred on a random voxel of its cleft (mask) or near its pieces (proximity).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from napari_avan.core.candidates import DEFAULT_PROXIMITY_THRESHOLD, signed_proximity
from napari_avan.core.clefts import clefts_from_probability
from napari_avan.core.metrics import assignment_metrics, cleft_metrics, precision_recall_f1
from napari_avan.core.tables import as_partner_table
from napari_avan.models.augment import Augmentation, geometric, intensity
from napari_avan.models.checkpoint import (
    LoadedModel,
    architecture_of,
    build_network,
    load_model,
    load_tensors,
    resolve_model,
    save_model,
)
from napari_avan.models.detect import DEFAULT_OVERLAP, DEFAULT_PATCH
from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.models.inference import crop_window, resample, to_float, working_shape
from napari_avan.models.networks import (
    PrunerConfig,
    PrunerNet,
    ResidualSymmetricUNet,
    UNetConfig,
    avan_config,
    cleft_detector_config,
)
from napari_avan.models.pruners import (
    DEFAULT_PRUNER_PATCH,
    PROXIMITY_WEIGHTS,
    PrunerCandidates,
    decide,
    predict_proximity,
    proximity_files,
    score_candidates,
)
from napari_avan.models.tune import (
    detector_probability,
    tune_avan,
    tune_detector,
    tune_pruner,
)
from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, check_voxel_size

KINDS = ("clefts", "avan", "mask-pruner", "proximity-pruner")
DETECTOR_TRAIN_TARGETS = ("mask", "proximity")
STATE_FILE = "train_state.pt"
#: What a training state holds (see where it is written below).
RESUME_KEYS = frozenset(
    {"weights", "optimiser", "step", "elapsed_s", "best", "log", "rng", "torch_rng"}
)
LOG_FILE = "log.csv"
RECIPE_FILE = "recipe.json"
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
    """One volume at the working voxel size: image in [0, 1], labels, true partners."""

    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray
    partners: pd.DataFrame
    name: str = "volume"


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
) -> TrainingVolume:
    """Check a training volume and resample it to the working voxel size."""
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
    return TrainingVolume(img, seg, clf, table, name)


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
    target: str = "mask"  # detector: "mask" (cleft probability) or "proximity" (signed)
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


# --- sampling ---------------------------------------------------------------------------------


def _start_around(centre: Sequence[int], patch: Sequence[int], shape: Sequence[int]) -> list[int]:
    """A window start placing ``centre`` inside, shifted into the volume where it fits."""
    starts = []
    for c, p, n in zip(centre, patch, shape, strict=True):
        s = int(c) - p // 2
        starts.append(int(np.clip(s, 0, n - p)) if n >= p else (n - p) // 2)
    return starts


class DetectorSampler:
    """Balanced cleft / background patches (rejection sampling)."""

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
                centre = [int(rng.integers(n)) for n in vol.image.shape]
            start = _start_around(centre, patch, vol.image.shape)
            target = crop_window(vol.clefts, start, patch, mirror=False) > 0
            image = crop_window(vol.image, start, patch, mirror=True)
            if (int(target.sum()) >= self.min_positive) == positive:
                break
        assert image is not None and target is not None
        if self.targets is not None:
            target = crop_window(self.targets[k], start, patch, mirror=False)
        return image, target.astype(np.float32)


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


# --- losses and validation --------------------------------------------------------------------


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    return (1 - (2 * inter + 1) / (prob.sum(dims) + target.sum(dims) + 1)).mean()


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


def _loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "proximity":
        return nn.functional.mse_loss(torch.tanh(logits), target)
    if kind in ("mask-pruner", "proximity-pruner"):
        return nn.functional.binary_cross_entropy_with_logits(logits, target.reshape(-1))
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
    if kind == "clefts":
        return bce + _dice_loss(logits, target)
    return bce


def validate_detector(
    model: LoadedModel, volumes: Sequence[TrainingVolume], run: RunPlan, min_size: int
) -> dict[str, float]:
    """Object and voxel F1 of the detector on whole validation volumes (working size)."""
    tp = fp = fn = vtp = vfp = vfn = 0
    for vol in volumes:
        prob = detector_probability(model, vol.image, run)
        labels = clefts_from_probability(prob, threshold=0.5, min_size=min_size)
        m = cleft_metrics(labels, vol.clefts)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        vtp, vfp, vfn = vtp + m.voxel_tp, vfp + m.voxel_fp, vfn + m.voxel_fn
    return {
        "cleft_f1": precision_recall_f1(tp, fp, fn)[2],
        "voxel_f1": precision_recall_f1(vtp, vfp, vfn)[2],
    }


def validate_avan(
    model: LoadedModel, volumes: Sequence[TrainingVolume], run: RunPlan
) -> dict[str, float]:
    """Dyadic accuracy, pre accuracy and polyadic edge F1 on every validation cleft (pre
    accuracy from the argmax pair on dyadic truth, from the thresholded edges on polyadic)."""
    from napari_avan.models.assign import iter_assign

    voxel = tuple(model.metadata["voxel_size_nm"])
    scores: dict[str, list[float]] = {"accuracy": [], "pre_accuracy": [], "edge_f1": []}
    for vol in volumes:
        if vol.partners.empty:
            continue
        ids = sorted(set(vol.partners["cleft_id"].tolist()))
        dyadic_truth = not vol.partners["cleft_id"].duplicated().any()
        # dyadic truth: the argmax pair is scored too; every volume: the thresholded edges
        for polyadic in (False, True) if dyadic_truth else (True,):
            rows = []
            for step in iter_assign(
                model, vol.image, vol.clefts, vol.segmentation, voxel, cleft_ids=ids, run=run,
                polyadic=polyadic,
            ):  # fmt: skip
                rows += [(a.cleft_id, p, q) for a in step.finished for p, q in a.edges]
            pred = pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"])
            m = assignment_metrics(pred, vol.partners, polyadic=polyadic)
            if polyadic:
                scores["edge_f1"] += [m.f1] * m.n_clefts
                if not dyadic_truth:
                    scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
            else:
                scores["accuracy"] += [m.accuracy] * m.n_clefts
                scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
    # no dyadic validation volume: accuracy is not measured and ranks nothing (NaN-free 0)
    return {k: float(np.mean(v)) if v else 0.0 for k, v in scores.items()}


def _proximity_target(vol: TrainingVolume, voxel: Sequence[float]) -> np.ndarray:
    """Parag et al.'s signed proximity of a training volume's clefts (float32)."""
    return signed_proximity(vol.clefts, vol.segmentation, vol.partners, voxel).astype(np.float32)


def validate_proximity(
    model: LoadedModel,
    volumes: Sequence[TrainingVolume],
    targets: Sequence[np.ndarray],
    run: RunPlan,
) -> dict[str, float]:
    """Voxel F1 of each side of the signed proximity (at +-0.3, the pieces' threshold)."""
    t = DEFAULT_PROXIMITY_THRESHOLD
    counts = np.zeros((2, 3))
    voxel = tuple(model.metadata["voxel_size_nm"])
    for vol, target in zip(volumes, targets, strict=True):
        prox = predict_proximity(model, vol.image, voxel, run=run)
        for side, sign in enumerate((1, -1)):
            pred, true = prox * sign >= t, target * sign >= t
            counts[side] += [np.sum(pred & true), np.sum(pred & ~true), np.sum(~pred & true)]
    pre_f1 = precision_recall_f1(*(int(c) for c in counts[0]))[2]
    post_f1 = precision_recall_f1(*(int(c) for c in counts[1]))[2]
    return {"sign_f1": (pre_f1 + post_f1) / 2, "pre_f1": pre_f1, "post_f1": post_f1}


def validate_pruner(
    model: LoadedModel,
    volumes: Sequence[TrainingVolume],
    candidates: Sequence[PrunerCandidates],
    run: RunPlan,
) -> dict[str, float]:
    """AVAN's validation figures for a pruner: accuracy and pre accuracy of the best pair
    (dyadic truth), edge F1 at probability 0.5 (every volume)."""
    scores: dict[str, list[float]] = {"accuracy": [], "pre_accuracy": [], "edge_f1": []}
    for vol, cands in zip(volumes, candidates, strict=True):
        if vol.partners.empty:
            continue
        ids = sorted(set(vol.partners["cleft_id"].tolist()))
        probs = score_candidates(model, cands, run=run)
        dyadic_truth = not vol.partners["cleft_id"].duplicated().any()
        for polyadic in (False, True) if dyadic_truth else (True,):
            pred = decide(cands.table, probs, polyadic=polyadic, cleft_ids=ids)
            m = assignment_metrics(pred, vol.partners, polyadic=polyadic)
            if polyadic:
                scores["edge_f1"] += [m.f1] * m.n_clefts
            else:
                scores["accuracy"] += [m.accuracy] * m.n_clefts
                scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
    return {k: float(np.mean(v)) if v else 0.0 for k, v in scores.items()}


def _better(settings: TrainSettings, new: dict[str, float], old: dict[str, float] | None) -> bool:
    if old is None:
        return True
    pair = ("edge_f1", "accuracy") if settings.polyadic else ("accuracy", "edge_f1")
    keys = {
        "clefts": ("sign_f1",) if settings.target == "proximity" else ("cleft_f1", "voxel_f1"),
        "avan": pair,
        "mask-pruner": pair,
        "proximity-pruner": pair,
    }[settings.kind]
    return tuple(new[k] for k in keys) > tuple(old[k] for k in keys)


# --- the loop ---------------------------------------------------------------------------------


def _tune(
    settings: TrainSettings,
    metadata: dict[str, Any],
    architecture: dict[str, Any],
    weights: dict[str, torch.Tensor],
    val: Sequence[TrainingVolume],
    candidates: Sequence[PrunerCandidates],
    run: RunPlan,
) -> dict[str, Any]:
    """Post-processing of the best model, chosen on the validation volumes (tune module)."""
    if settings.target != "mask":
        return {}
    network = build_network(architecture)
    network.load_state_dict(weights)
    network.eval()
    model = LoadedModel(network, metadata)
    if settings.kind == "clefts":
        return tune_detector(model, val, run)
    if settings.kind == "avan":
        return tune_avan(model, val, run)
    return tune_pruner(model, val, candidates, run)


def _lr_factor(fraction: float) -> float:
    """Linear warm-up over the first 3 % of the budget, then cosine down to 5 %."""
    if fraction < 0.03:
        return 0.1 + 0.9 * fraction / 0.03
    t = min(1.0, (fraction - 0.03) / 0.97)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


def _train_autocast(run: RunPlan, network: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for training where it is known to work, else full precision.

    On the CPU, torch 2.13's bf16 convolution backward corrupts the heap or hangs for some
    shapes: single-threaded with an 8 x 96 x 96 patch (abort), and with narrow layers (4 to
    8 channels, hang). The default networks (>= 16 channels) on >= 2 threads train
    correctly, so only they use bf16 on the CPU.
    """
    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    if run.device.type == "cpu":
        config = getattr(network, "config", None)
        narrow = config is None or min(config.widths) < 16
        if narrow or torch.get_num_threads() < 2:
            return contextlib.nullcontext()
    return torch.autocast(run.device.type, dtype=run.autocast_dtype)


def task_of(settings: TrainSettings) -> str:
    """The model task (``model.json``'s ``task``) a training kind produces."""
    return {"clefts": "cleft-detector"}.get(settings.kind, settings.kind)


def initial_network(settings: TrainSettings, init: LoadedModel | None) -> nn.Module:
    """A fresh network for ``settings.kind``, or the ``init`` model's to fine-tune."""
    if settings.kind in ("mask-pruner", "proximity-pruner"):
        if init is None:
            widths = tuple(settings.widths or PrunerConfig().widths)
            return PrunerNet(PrunerConfig(widths=widths))
        if not isinstance(init.network, PrunerNet):
            raise AvanInputError("the --init model is not a pruner")
        return init.network
    if init is not None:
        net = init.network
        config = getattr(net, "config", None)
        wanted = (1, 1) if settings.kind == "clefts" else (2, 2)
        if (
            not isinstance(config, UNetConfig)
            or (
                config.in_channels,
                config.out_channels,
            )
            != wanted
        ):
            raise AvanInputError(
                f"the --init model is not a {settings.kind} model ({wanted[0]} input and "
                f"{wanted[1]} output channels expected)"
            )
        return net
    config = cleft_detector_config(settings.target) if settings.kind == "clefts" else avan_config()
    if settings.widths:
        config = UNetConfig.from_dict({**config.to_dict(), "widths": list(settings.widths)})
    return ResidualSymmetricUNet(config)


def resume_state(out: Path, resume: bool) -> dict[str, Any] | None:
    """The training state to continue from in ``out`` (None for a new run), checked.

    Raises:
        AvanInputError: ``out`` exists without ``resume``, holds no state, or holds a
            damaged one; ``resume`` without ``out``.
    """
    out = Path(out)
    state: dict[str, Any] | None = None
    if out.exists():
        if not resume:
            raise AvanInputError(
                f"{out} exists: choose a new folder, or pass --resume to continue its run"
            )
        if not (out / STATE_FILE).is_file():
            raise AvanInputError(
                f"{out} holds no training state (the run finished): fine-tune it with --init "
                "into a new folder instead"
            )
        state = load_tensors(out / STATE_FILE, None, what="training state")
        missing = sorted(RESUME_KEYS - set(state))
        if missing:
            raise AvanInputError(
                f"{out / STATE_FILE} is not a training state (no {', '.join(missing)}): "
                "choose a new --out folder to start over"
            )
    elif resume:
        raise AvanInputError(f"--resume given, but {out} does not exist")
    return state


def iter_train(
    settings: TrainSettings,
    train: Sequence[TrainingVolume],
    val: Sequence[TrainingVolume],
    out: str | Path,
    *,
    init: str | Path | None = None,
    resume: bool = False,
    run: RunPlan | None = None,
    recipe: dict[str, Any] | None = None,
    proximity_model: str | Path | None = None,
) -> Iterator[TrainProgress]:
    """Train a model into the folder ``out``, yielding progress after every step.

    Args:
        settings: kind, budget, optimiser and sampling settings; ``voxel_size_nm`` is the
            working voxel size the volumes were prepared at.
        train, val: volumes from :func:`prepare_volume`.
        out: model folder to create (it must not exist, unless ``resume``).
        init: a model folder or bundled name to fine-tune from.
        resume: continue an interrupted run from the state saved in ``out``.
        recipe: what to record beside the weights (the command line, data names).
        proximity_model: the signed proximity detector of a proximity pruner (its candidates
            come from this detector's predictions, and the pruner's folder keeps a copy).
    """
    out = Path(out)
    if settings.voxel_size_nm is None:
        raise AvanInputError("settings.voxel_size_nm (the working voxel size) is not set")
    if not train or not val:
        raise AvanInputError("training needs at least one training and one validation volume")
    working_size = check_voxel_size(settings.voxel_size_nm)
    working = list(working_size)
    state = resume_state(out, resume)
    run = run or make_plan()
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    init_model = resolve_model(init, task_of(settings)) if init is not None else None
    network = initial_network(settings, init_model).to(run.device)
    assert isinstance(network, ResidualSymmetricUNet | PrunerNet)
    if run.channels_last:
        network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimiser = torch.optim.Adam(network.parameters(), lr=settings.lr)
    patch = settings.train_patch
    sampler: DetectorSampler | AvanSampler | PrunerSampler
    task = task_of(settings)
    target_name = {"clefts": settings.target, "avan": "pre-post"}.get(settings.kind, "pair")
    extra_files: dict[str, bytes] = {}
    extra_meta: dict[str, Any] = {}
    val_targets: list[np.ndarray] = []
    val_candidates: list[PrunerCandidates] = []
    if settings.kind == "clefts":
        train_targets = None
        if settings.target == "proximity":
            train_targets = [_proximity_target(v, working) for v in train]
            val_targets = [_proximity_target(v, working) for v in val]
        sampler = DetectorSampler(train, patch, settings.min_positive, train_targets)
    elif settings.kind == "avan":
        sampler = AvanSampler(train, patch)
    else:
        prox = None
        if settings.kind == "proximity-pruner":
            if proximity_model is None:
                raise AvanInputError(
                    "the proximity pruner needs its signed proximity detector: train one with "
                    "napari-avan train clefts --target proximity and pass --proximity-model"
                )
            prox = load_model(proximity_model)
            if prox.metadata.get("target") != "proximity":
                raise AvanInputError(f"{proximity_model} is not a signed proximity detector")
            extra_files = proximity_files(prox)
            extra_meta = {
                "proximity_sha256": hashlib.sha256(extra_files[PROXIMITY_WEIGHTS]).hexdigest(),
                "proximity_model": str(proximity_model),
            }

        def candidates_of(vol: TrainingVolume) -> PrunerCandidates:
            proximity = None
            if prox is not None:
                proximity = predict_proximity(prox, vol.image, working_size, run=run)
            return PrunerCandidates(
                settings.kind, vol.image, vol.segmentation, vol.clefts, working_size,
                partners=vol.partners, proximity=proximity, patch=patch,
            )  # fmt: skip

        sampler = PrunerSampler([candidates_of(v) for v in train])
        val_candidates = [candidates_of(v) for v in val]
    metadata: dict[str, Any] = {
        "name": out.name,
        "task": task,
        "target": target_name,
        **extra_meta,
        "polyadic": settings.polyadic,
        "voxel_size_nm": working,
        "patch": list(patch),
        "normalisation": "uint8 / 255, float as is",
        "training": {
            "settings": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(settings).items()
                if k != "augmentation"
            },
            "augmentation": asdict(settings.augmentation),
            "train_volumes": [v.name for v in train],
            "val_volumes": [v.name for v in val],
            "init": str(init) if init is not None else None,
        },
    }
    if settings.kind == "clefts":
        # fully convolutional: inference uses the larger default window, not the training one
        metadata["patch"] = list(DEFAULT_PATCH)
        metadata["overlap"] = list(DEFAULT_OVERLAP)
        metadata["training"]["patch"] = list(patch)
    log_rows: list[dict[str, Any]] = []
    step, elapsed_before, best = 0, 0.0, None
    if state is not None:
        network.load_state_dict(state["weights"])
        optimiser.load_state_dict(state["optimiser"])
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        best = {k: float(v) for k, v in json.loads(state["best"]).items()} or None
        log_rows = json.loads(state["log"])
        rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])
    min_size = max(1, round(50 * 16 / (working[1] * working[2])))

    def checkpoint(with_state: bool, best_weights: dict[str, torch.Tensor]) -> None:
        extras = {
            **extra_files,
            LOG_FILE: pd.DataFrame(log_rows).to_csv(index=False).encode(),
            RECIPE_FILE: (json.dumps(recipe or {}, indent=2) + "\n").encode(),
        }
        if with_state:
            buffer = io.BytesIO()
            torch.save(
                {
                    "weights": {k: v.detach().cpu() for k, v in network.state_dict().items()},
                    "optimiser": optimiser.state_dict(),
                    "step": step,
                    "elapsed_s": elapsed_before + (time.perf_counter() - started),
                    "best": json.dumps(best or {}),
                    "log": json.dumps(log_rows),
                    "rng": json.dumps(rng.bit_generator.state),
                    "torch_rng": torch.get_rng_state(),
                },
                buffer,
            )
            extras[STATE_FILE] = buffer.getvalue()
        holder = build_network(architecture_of(network))
        holder.load_state_dict(best_weights)
        save_model(
            out,
            holder,
            {**metadata, "metrics": best or {}, "steps": step},
            overwrite=True,
            extras=extras,
        )

    best_weights = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    if state is not None and (out / "weights.pt").is_file():
        best_weights = load_model(out).network.state_dict()
    started = time.perf_counter()
    budget_s = settings.minutes * 60 if settings.minutes is not None else None

    def fraction() -> float:
        parts = []
        if settings.steps is not None:
            parts.append(step / settings.steps)
        if budget_s is not None:
            parts.append((elapsed_before + time.perf_counter() - started) / budget_s)
        return min(1.0, max(parts))

    losses: list[float] = []
    while fraction() < 1.0:
        network.train()
        for group in optimiser.param_groups:
            group["lr"] = settings.lr * _lr_factor(fraction())
        inputs, targets = [], []
        for b in range(settings.batch_size):
            if isinstance(sampler, PrunerSampler):
                x, y = sampler.draw(rng, positive=(step * settings.batch_size + b) % 2 == 0)
                (x,) = geometric([x], rng, settings.augmentation)
                x[0] = intensity(x[0], rng, settings.augmentation)
                inputs.append(x)
                targets.append(y)
            elif isinstance(sampler, DetectorSampler):
                image, target = sampler.draw(
                    rng, positive=(step * settings.batch_size + b) % 2 == 0
                )
                image, target = geometric([image, target], rng, settings.augmentation)
                inputs.append(intensity(image, rng, settings.augmentation)[None])
                targets.append(target[None])
            else:
                x, y = sampler.draw(rng)
                x, y = geometric([x, y], rng, settings.augmentation)
                x[0] = intensity(x[0], rng, settings.augmentation)
                inputs.append(x)
                targets.append(y)
        x_t = run.tensor(torch.from_numpy(np.stack(inputs)))
        y_t = torch.from_numpy(np.stack(targets)).to(run.device)
        with _train_autocast(run, network):
            logits = network(x_t)
        loss = _loss(
            "proximity" if settings.target == "proximity" else settings.kind, logits.float(), y_t
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        step += 1
        done = fraction() >= 1.0
        validation = None
        saved = False
        if step % settings.val_every == 0 or done:
            model = LoadedModel(network, metadata)
            if settings.kind == "clefts" and settings.target == "proximity":
                validation = validate_proximity(model, val, val_targets, run)
            elif settings.kind == "clefts":
                validation = validate_detector(model, val, run, min_size)
            elif settings.kind == "avan":
                validation = validate_avan(model, val, run)
            else:
                validation = validate_pruner(model, val, val_candidates, run)
            if _better(settings, validation, best):
                best = validation
                best_weights = {
                    k: v.detach().cpu().clone() for k, v in network.state_dict().items()
                }
            if done:
                metadata["postprocess"] = _tune(
                    settings, metadata, architecture_of(network), best_weights, val,
                    val_candidates, run,
                )  # fmt: skip
            elapsed = elapsed_before + time.perf_counter() - started
            log_rows.append(
                {
                    "step": step,
                    "elapsed_s": round(elapsed, 1),
                    "lr": optimiser.param_groups[0]["lr"],
                    "loss": float(np.mean(losses)),
                    **validation,
                }
            )
            losses.clear()
            checkpoint(not done, best_weights)
            saved = True
        yield TrainProgress(
            step,
            settings.steps,
            fraction(),
            losses[-1] if losses else float(loss.detach()),
            elapsed_before + time.perf_counter() - started,
            validation,
            best,
            saved,
        )

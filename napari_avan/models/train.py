"""Training the cleft detector and AVAN (issue 4; DESIGN sections 3 and 4).

Volumes are resampled once to the model's working voxel size. Each step draws a batch of
patches, augments them (:mod:`napari_avan.models.augment`) and takes an Adam step whose
learning rate warms up and then follows a cosine to 5 % of its start over the budget (steps
or minutes, whichever ends first). Every ``val_every`` steps the model is scored on the
validation volumes through the same code that serves users (sliding-window detection;
AVAN assignment of every validation cleft); the best model so far is written to the output
folder with the training log, and a resumable training state rides beside it until the run
ends. :func:`iter_train` yields :class:`TrainProgress` after every step.

Sampling:
- detector: patches alternate between positive (holding at least ``min_positive`` cleft
  voxels) and negative (none); random windows are proposed (positives around a random cleft
  voxel, jittered by up to half a patch) and rejected until they have the wanted class.
- AVAN: a random cleft with partners, a window around a random voxel of it (jitter inside
  the cleft); inputs are the image and that cleft's mask, targets the masks of its
  presynaptic and postsynaptic segments.
"""

from __future__ import annotations

import contextlib
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

from napari_avan.core.clefts import clefts_from_probability
from napari_avan.core.metrics import assignment_metrics, cleft_metrics, precision_recall_f1
from napari_avan.core.tables import as_partner_table
from napari_avan.models.augment import Augmentation, geometric, intensity
from napari_avan.models.checkpoint import LoadedModel, load_model, save_model
from napari_avan.models.detect import DEFAULT_OVERLAP, DEFAULT_PATCH, fit_patch
from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.models.inference import pad_mirror, predict, resample, to_float
from napari_avan.models.networks import (
    ResidualSymmetricUNet,
    UNetConfig,
    avan_config,
    cleft_detector_config,
)
from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, check_voxel_size

KINDS = ("clefts", "avan")
STATE_FILE = "train_state.pt"
LOG_FILE = "log.csv"
RECIPE_FILE = "recipe.json"
#: The detector's default working in-plane voxel size (clefts are tens of nm thick).
DETECTOR_INPLANE_NM = 8.0
DEFAULT_TRAIN_PATCH = {"clefts": (16, 96, 96), "avan": (8, 96, 96)}


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
    shape = tuple(
        max(1, round(n * v / w)) for n, v, w in zip(np.shape(image), voxel, working, strict=True)
    )
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
    polyadic: bool = False  # AVAN: choose the best model by polyadic edge F1 first
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


def _crop(array: np.ndarray, start: Sequence[int], patch: Sequence[int], mode: str) -> np.ndarray:
    """``array[start : start + patch]``, padded (``mode``) where the window leaves it."""
    slices, pads = [], []
    for s, p, n in zip(start, patch, array.shape, strict=True):
        a, b = max(0, s), min(n, s + p)
        slices.append(slice(a, b))
        pads.append((a - s, s + p - b))
    out = array[tuple(slices)]
    if mode == "constant":
        return np.pad(out, pads) if any(x or y for x, y in pads) else out
    return pad_mirror(out, pads)


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
    ) -> None:
        self.volumes = list(volumes)
        self.patch = patch
        self.min_positive = min_positive
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
            target = _crop(vol.clefts, start, patch, "constant") > 0
            image = _crop(vol.image, start, patch, "reflect")
            if (int(target.sum()) >= self.min_positive) == positive:
                break
        assert image is not None and target is not None
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
        image = _crop(vol.image, start, self.patch, "reflect")
        mask = _crop(vol.clefts, start, self.patch, "constant") == cleft_id
        seg = _crop(vol.segmentation, start, self.patch, "constant")
        targets = np.stack([np.isin(seg, pre), np.isin(seg, post)]).astype(np.float32)
        return np.stack([image, mask.astype(np.float32)]), targets


# --- losses and validation --------------------------------------------------------------------


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    return (1 - (2 * inter + 1) / (prob.sum(dims) + target.sum(dims) + 1)).mean()


def _loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
    if kind == "clefts":
        return bce + _dice_loss(logits, target)
    return bce


def validate_detector(
    model: LoadedModel, volumes: Sequence[TrainingVolume], run: RunPlan, min_size: int
) -> dict[str, float]:
    """Object and voxel F1 of the detector on whole validation volumes (working size)."""
    meta = model.metadata
    tp = fp = fn = vtp = vfp = vfn = 0
    for vol in volumes:
        config = model.network.config
        assert isinstance(config, UNetConfig)
        patch = fit_patch(vol.image.shape, tuple(meta["patch"]), config.divisor)
        overlap = tuple(min(o, p // 2) for o, p in zip(meta["overlap"], patch, strict=True))
        prob = predict(
            model.network, vol.image, patch=patch, overlap=overlap, out_channels=1, run=run
        )[0]
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
    """Dyadic accuracy, pre accuracy and polyadic edge F1 on every validation cleft."""
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
            else:
                scores["accuracy"] += [m.accuracy] * m.n_clefts
                scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
    # no dyadic validation volume: accuracy is not measured and ranks nothing (NaN-free 0)
    return {k: float(np.mean(v)) if v else 0.0 for k, v in scores.items()}


def _better(settings: TrainSettings, new: dict[str, float], old: dict[str, float] | None) -> bool:
    if old is None:
        return True
    keys = {
        "clefts": ("cleft_f1", "voxel_f1"),
        "avan": ("edge_f1", "accuracy") if settings.polyadic else ("accuracy", "edge_f1"),
    }[settings.kind]
    return tuple(new[k] for k in keys) > tuple(old[k] for k in keys)


# --- the loop ---------------------------------------------------------------------------------


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


def initial_network(settings: TrainSettings, init: LoadedModel | None) -> nn.Module:
    """A fresh network for ``settings.kind``, or the ``init`` model's to fine-tune."""
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
    config = cleft_detector_config("mask") if settings.kind == "clefts" else avan_config()
    if settings.widths:
        config = UNetConfig.from_dict({**config.to_dict(), "widths": list(settings.widths)})
    return ResidualSymmetricUNet(config)


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
) -> Iterator[TrainProgress]:
    """Train a model into the folder ``out``, yielding progress after every step.

    Args:
        settings: kind, budget, optimiser and sampling settings; ``voxel_size_nm`` is the
            working voxel size the volumes were prepared at.
        train, val: volumes from :func:`prepare_volume`.
        out: model folder to create (it must not exist, unless ``resume``).
        init: a model folder to fine-tune from.
        resume: continue an interrupted run from the state saved in ``out``.
        recipe: what to record beside the weights (the command line, data names).
    """
    out = Path(out)
    if settings.voxel_size_nm is None:
        raise AvanInputError("settings.voxel_size_nm (the working voxel size) is not set")
    if not train or not val:
        raise AvanInputError("training needs at least one training and one validation volume")
    working = list(check_voxel_size(settings.voxel_size_nm))
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
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    elif resume:
        raise AvanInputError(f"--resume given, but {out} does not exist")

    run = run or make_plan()
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    init_model = load_model(init) if init is not None else None
    network = initial_network(settings, init_model).to(run.device)
    assert isinstance(network, ResidualSymmetricUNet)
    if run.channels_last:
        network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimiser = torch.optim.Adam(network.parameters(), lr=settings.lr)
    patch = settings.train_patch
    sampler: DetectorSampler | AvanSampler
    if settings.kind == "clefts":
        sampler = DetectorSampler(train, patch, settings.min_positive)
    else:
        sampler = AvanSampler(train, patch)
    metadata: dict[str, Any] = {
        "name": out.name,
        "task": "cleft-detector" if settings.kind == "clefts" else "avan",
        "target": "mask" if settings.kind == "clefts" else "pre-post",
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
        holder = ResidualSymmetricUNet(network.config)
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
            if isinstance(sampler, DetectorSampler):
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
        loss = _loss(settings.kind, logits.float(), y_t)
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
            if settings.kind == "clefts":
                validation = validate_detector(model, val, run, min_size)
            else:
                validation = validate_avan(model, val, run)
            if _better(settings, validation, best):
                best = validation
                best_weights = {
                    k: v.detach().cpu().clone() for k, v in network.state_dict().items()
                }
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

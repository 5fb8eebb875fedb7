"""One training task per kind of model: what the loop (:mod:`.loop`) needs to know of it.

A task makes the network, draws augmented examples, scores a batch (its loss), validates,
ranks validations, chooses the post-processing when the run ends, and names what the model
folder records besides the weights. :func:`task_for` picks the task of some settings:

- ``clefts`` (target mask): :class:`CleftDetectorTask`, BCE + Dice, best by cleft F1.
- ``clefts --target proximity``: :class:`ProximityDetectorTask`, MSE of tanh, sign F1.
- ``clefts --target cleftnet``: :class:`CleftNetDetectorTask`, the mask plus CleftNet's
  cleft-boundary channel, BCE + Dice on each, best by cleft F1.
- ``clefts --feature-augmentor N`` (any target): the detector U-Net with a
  :class:`~napari_avan.models.networks.FeatureAugmentor` of N learned queries at its
  bottleneck; an ``--init`` model without one is given a fresh, zero-output one.
- ``avan``: :class:`AvanTask`, BCE, best by accuracy then edge F1 (swapped if polyadic).
- ``mask-pruner``: :class:`MaskPrunerTask`, BCE on candidate pairs, ranked as AVAN.
- ``proximity-pruner``: :class:`ProximityPrunerTask`, the mask pruner's, on candidates
  from a signed proximity detector that its model folder keeps.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_avan.core.clefts import cleft_boundary
from napari_avan.models.augment import geometric, intensity
from napari_avan.models.checkpoint import LoadedModel, load_model
from napari_avan.models.detect import DEFAULT_OVERLAP, DEFAULT_PATCH
from napari_avan.models.device import RunPlan
from napari_avan.models.networks import (
    PrunerConfig,
    PrunerNet,
    ResidualSymmetricUNet,
    UNetConfig,
    avan_config,
    cleft_detector_config,
)
from napari_avan.models.pruners import PROXIMITY_WEIGHTS, PrunerCandidates, proximity_files
from napari_avan.models.train.samplers import AvanSampler, DetectorSampler, PrunerSampler
from napari_avan.models.train.settings import TrainingVolume, TrainSettings
from napari_avan.models.train.validation import (
    proximity_map,
    proximity_target,
    validate_avan,
    validate_detector,
    validate_proximity,
    validate_pruner,
)
from napari_avan.models.tune import tune_avan, tune_detector, tune_pruner
from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size

#: A zero-argument function giving the best model so far (built when called).
BestModel = Callable[[], LoadedModel]


def bce_dice(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice (:func:`dice_loss`) of one output channel;
    ``weight`` (0 or 1 per voxel) leaves voxels of unknown truth out of both."""
    if weight is None:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
        return bce + dice_loss(logits, target)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * weight).sum() / weight.sum().clamp(min=1.0)
    return bce + dice_loss(logits, target, weight)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft Dice loss of sigmoid probabilities, per example, averaged (smoothing 1); voxels
    of ``weight`` 0 count for nothing."""
    prob = torch.sigmoid(logits)
    if weight is not None:
        prob, target = prob * weight, target * weight
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    return (1 - (2 * inter + 1) / (prob.sum(dims) + target.sum(dims) + 1)).mean()


class TrainingTask(ABC):
    """What differs between kinds of model. :func:`task_for` makes one from the settings;
    :meth:`prepare` then reads the volumes, after the network is made (building a model, as
    loading the proximity pruner's detector does, draws on torch's random stream, and a
    seeded network must be initialised first)."""

    #: ``model.json``'s ``task`` (what :func:`~napari_avan.models.checkpoint.resolve_model`
    #: asks of an ``--init`` model).
    model_task: str
    #: ``model.json``'s ``target``.
    target: str

    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings
        self.val: list[TrainingVolume] = []
        #: the post-processing of the model fine-tuned from (tuning keeps it on ties)
        self.prior: dict[str, Any] | None = None

    @property
    def voxel_size_nm(self) -> VoxelSize:
        """The working voxel size the volumes were prepared at."""
        return check_voxel_size(self.settings.voxel_size_nm)

    @property
    @abstractmethod
    def rank_keys(self) -> tuple[str, ...]:
        """The validation figures that choose the best model, compared in this order."""

    @abstractmethod
    def network(self, init: LoadedModel | None) -> nn.Module:
        """A fresh network, or the ``init`` model's (checked) to fine-tune."""

    def prepare(
        self, train: Sequence[TrainingVolume], val: Sequence[TrainingVolume], run: RunPlan
    ) -> None:
        """Read the volumes: the training sampler and what validation needs."""
        self.val = list(val)

    @abstractmethod
    def example(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The run's ``index``-th training example, augmented: network input and target."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of a batch (``logits`` in fp32)."""

    @abstractmethod
    def validate(self, model: LoadedModel, run: RunPlan) -> dict[str, float]:
        """The validation figures of ``model`` (the network being trained)."""

    def better(self, new: dict[str, float], old: dict[str, float] | None) -> bool:
        """Whether validation ``new`` beats the best so far, ``old`` (None: none yet)."""
        if old is None:
            return True
        return tuple(new[k] for k in self.rank_keys) > tuple(old[k] for k in self.rank_keys)

    def tune(self, best: BestModel, run: RunPlan) -> dict[str, Any]:
        """``model.json``'s ``postprocess``, chosen on the validation volumes for the best
        model (:mod:`napari_avan.models.tune`); none by default."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """Entries ``model.json`` holds for this task alone (after ``target``)."""
        return {}

    def inference_window(self) -> dict[str, Any]:
        """``model.json``'s ``patch`` (and ``overlap``) where inference does not use the
        training patch; empty where it does."""
        return {}

    def files(self) -> dict[str, bytes]:
        """Files the model folder holds for this task alone, by name."""
        return {}


def _partner_rank(settings: TrainSettings) -> tuple[str, ...]:
    """AVAN and the pruners: dyadic accuracy first, or polyadic edge F1 first."""
    return ("edge_f1", "accuracy") if settings.polyadic else ("accuracy", "edge_f1")


class _UNetTask(TrainingTask):
    """A task whose network is a :class:`ResidualSymmetricUNet`."""

    #: (input, output) channels of the network.
    channels: tuple[int, int]

    @abstractmethod
    def config(self) -> UNetConfig:
        """The configuration of a fresh network (before ``settings.widths``); its
        ``augmentor`` is also the one an ``--init`` network is given."""

    def network(self, init: LoadedModel | None) -> nn.Module:
        if init is not None:
            self.prior = dict(init.metadata.get("postprocess") or {})
            net = init.network
            config = getattr(net, "config", None)
            if (
                not isinstance(config, UNetConfig)
                or (config.in_channels, config.out_channels) != self.channels
            ):
                raise AvanInputError(
                    f"the --init model is not a {self.settings.kind} model ({self.channels[0]} "
                    f"input and {self.channels[1]} output channels expected)"
                )
            return self._with_augmentor(net)
        config, widths = self.config(), self.settings.widths
        if widths:
            config = UNetConfig.from_dict({**config.to_dict(), "widths": list(widths)})
        return ResidualSymmetricUNet(config)

    def _with_augmentor(self, net: nn.Module) -> nn.Module:
        """The ``--init`` network with the feature augmentor that :meth:`config` asks for
        (``settings.feature_augmentor``): as it is when none is asked for or it has that
        one, else a copy given a fresh one (zero output: it computes what ``net`` does)."""
        wanted = self.config().augmentor
        if not wanted or not isinstance(net, ResidualSymmetricUNet):
            return net
        has = net.config.augmentor
        if wanted == has:
            return net
        if has:
            raise AvanInputError(
                f"the --init model has a feature augmentor of {has} queries, not the "
                f"{wanted} asked for: leave out --feature-augmentor to keep its own"
            )
        return _augmented(net, wanted)


def _smallest_cleft_nm3(volumes: Sequence[TrainingVolume], voxel: VoxelSize) -> float | None:
    """The volume of the smallest cleft of the training volumes (nm^3; None: none)."""
    sizes = []
    for vol in volumes:
        ids, inverse = np.unique(vol.clefts, return_inverse=True)
        counts = np.bincount(inverse.ravel(), minlength=ids.size)
        sizes += [int(c) for i, c in zip(ids, counts, strict=True) if i != 0]
    return min(sizes) * float(np.prod(voxel)) if sizes else None


class CleftDetectorTask(_UNetTask):
    """The cleft detector: cleft probability from the image (BCE + Dice); balanced cleft and
    background patches; object then voxel F1; threshold and minimum size tuned at the end."""

    model_task = "cleft-detector"
    target = "mask"
    channels = (1, 1)
    sampler: DetectorSampler

    @property
    def rank_keys(self) -> tuple[str, ...]:
        return ("cleft_f1", "voxel_f1")

    def config(self) -> UNetConfig:
        return cleft_detector_config(self.target, augmentor=self.settings.feature_augmentor)

    def prepare(
        self, train: Sequence[TrainingVolume], val: Sequence[TrainingVolume], run: RunPlan
    ) -> None:
        super().prepare(train, val, run)
        self.sampler = DetectorSampler(train, self.settings.train_patch, self.settings.min_positive)
        self.smallest_nm3 = _smallest_cleft_nm3(train, self.voxel_size_nm)

    def example(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        augmentation = self.settings.augmentation
        image, target = self.sampler.draw(rng, positive=index % 2 == 0)
        if target.ndim == 4:  # cleft mask and loss weight (volumes with unknown parts)
            image, mask, weight = geometric([image, target[0], target[1]], rng, augmentation)
            return intensity(image, rng, augmentation)[None], np.stack([mask, weight])
        image, target = geometric([image, target], rng, augmentation)
        return intensity(image, rng, augmentation)[None], target[None]

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[1] == 2:  # (mask, weight): voxels of unknown truth count for nothing
            return bce_dice(logits, target[:, :1], target[:, 1:])
        return bce_dice(logits, target)

    @property
    def min_size(self) -> int:
        """Smallest cleft kept in validation, in voxels (50 voxels at 4 x 4 nm in-plane)."""
        _, y, x = self.voxel_size_nm
        return max(1, round(50 * 16 / (y * x)))

    def validate(self, model: LoadedModel, run: RunPlan) -> dict[str, float]:
        return validate_detector(model, self.val, run, self.min_size)

    def tune(self, best: BestModel, run: RunPlan) -> dict[str, Any]:
        return tune_detector(best(), self.val, run, self.prior, self.smallest_nm3)

    def inference_window(self) -> dict[str, Any]:
        # fully convolutional: inference uses the larger default window, not the training one
        return {"patch": list(DEFAULT_PATCH), "overlap": list(DEFAULT_OVERLAP)}


class CleftNetDetectorTask(CleftDetectorTask):
    """The detector with CleftNet's label augmentation (Liu & Ji 2021): each voxel's label is
    a vector, the cleft mask and the cleft boundary (:func:`~napari_avan.core.clefts.
    cleft_boundary`), and the network learns both (BCE + Dice on each, unknown voxels
    weighted 0 as for the mask). The boundary channel shapes the features; detection,
    validation and tuning read the mask channel alone. Fine-tuning from a mask detector
    widens its output layer: the boundary channel starts as a copy of the mask channel."""

    target = "cleftnet"
    channels = (1, 2)

    def network(self, init: LoadedModel | None) -> nn.Module:
        if init is not None and isinstance(init.network, ResidualSymmetricUNet):
            config = init.network.config
            if (config.in_channels, config.out_channels) == (1, 1):
                init = LoadedModel(_widened(init.network, 2), init.metadata, init.path)
        return super().network(init)

    def example(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, target = super().example(rng, index)  # (mask[, weight], z, y, x)
        boundary = cleft_boundary(target[0] > 0.5).astype(target.dtype)
        return image, np.concatenate([target[:1], boundary[None], target[1:]])

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = target[:, 2:] if target.shape[1] == 3 else None
        return bce_dice(logits[:, :1], target[:, :1], weight) + bce_dice(
            logits[:, 1:], target[:, 1:2], weight
        )


def _widened(network: ResidualSymmetricUNet, out_channels: int) -> ResidualSymmetricUNet:
    """A copy of a one-output U-Net with ``out_channels`` outputs, each a copy of its one."""
    config = UNetConfig.from_dict({**network.config.to_dict(), "out_channels": out_channels})
    wide = ResidualSymmetricUNet(config)
    state = network.state_dict()
    for key in ("output.weight", "output.bias"):
        state[key] = state[key].repeat(out_channels, *([1] * (state[key].ndim - 1)))
    wide.load_state_dict(state)
    return wide


def _augmented(network: ResidualSymmetricUNet, queries: int) -> ResidualSymmetricUNet:
    """A copy of a U-Net without a feature augmentor given one of ``queries`` learned
    queries; its output projection starts at zero, so the copy computes what ``network``
    does until training moves it."""
    config = UNetConfig.from_dict({**network.config.to_dict(), "augmentor": queries})
    augmented = ResidualSymmetricUNet(config)
    missing, unexpected = augmented.load_state_dict(network.state_dict(), strict=False)
    if unexpected or any(not key.startswith("augmentor.") for key in missing):
        raise AssertionError(f"not a U-Net of the same layers: {missing + unexpected}")
    return augmented


class ProximityDetectorTask(CleftDetectorTask):
    """The signed proximity detector (Parag et al.): the detector's patches, regressing the
    signed proximity through a tanh (MSE); ranked by the mean F1 of its two signs."""

    target = "proximity"
    val_targets: list[np.ndarray]

    @property
    def rank_keys(self) -> tuple[str, ...]:
        return ("sign_f1",)

    def prepare(
        self, train: Sequence[TrainingVolume], val: Sequence[TrainingVolume], run: RunPlan
    ) -> None:
        self.val = list(val)
        voxel = self.voxel_size_nm
        self.smallest_nm3 = _smallest_cleft_nm3(train, voxel)
        train_targets = [proximity_target(v, voxel) for v in train]
        self.val_targets = [proximity_target(v, voxel) for v in val]
        self.sampler = DetectorSampler(
            train, self.settings.train_patch, self.settings.min_positive, train_targets
        )

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(torch.tanh(logits), target)

    def validate(self, model: LoadedModel, run: RunPlan) -> dict[str, float]:
        return validate_proximity(model, self.val, self.val_targets, run)

    # tune: the detector's (threshold and minimum size of cleft detection, which reads the
    # map's magnitude); the proximity pruner thresholds the signed map at its own levels


class AvanTask(_UNetTask):
    """AVAN: (image, cleft mask) in, (pre, post) segment masks out (BCE); cleft-centred
    patches; assignment of every validation cleft; partner thresholds tuned at the end."""

    model_task = "avan"
    target = "pre-post"
    channels = (2, 2)
    sampler: AvanSampler

    @property
    def rank_keys(self) -> tuple[str, ...]:
        return _partner_rank(self.settings)

    def config(self) -> UNetConfig:
        return avan_config()

    def prepare(
        self, train: Sequence[TrainingVolume], val: Sequence[TrainingVolume], run: RunPlan
    ) -> None:
        super().prepare(train, val, run)
        self.sampler = AvanSampler(train, self.settings.train_patch)

    def example(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        augmentation = self.settings.augmentation
        x, y = self.sampler.draw(rng)
        x, y = geometric([x, y], rng, augmentation)
        x[0] = intensity(x[0], rng, augmentation)
        return x, y

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, target)

    def validate(self, model: LoadedModel, run: RunPlan) -> dict[str, float]:
        return validate_avan(model, self.val, run)

    def tune(self, best: BestModel, run: RunPlan) -> dict[str, Any]:
        return tune_avan(best(), self.val, run, self.prior)


class MaskPrunerTask(TrainingTask):
    """The mask pruner: one probability per candidate pair (BCE); true and false pairs in
    turn; AVAN's validation figures; its decision threshold tuned at the end."""

    model_task = "mask-pruner"
    target = "pair"
    sampler: PrunerSampler
    val_candidates: list[PrunerCandidates]

    @property
    def rank_keys(self) -> tuple[str, ...]:
        return _partner_rank(self.settings)

    def network(self, init: LoadedModel | None) -> nn.Module:
        if init is None:
            widths = tuple(self.settings.widths or PrunerConfig().widths)
            return PrunerNet(PrunerConfig(widths=widths))
        if not isinstance(init.network, PrunerNet):
            raise AvanInputError("the --init model is not a pruner")
        return init.network

    def proximity(self, vol: TrainingVolume, run: RunPlan) -> np.ndarray | None:
        """The signed proximity map the candidates of ``vol`` come from (None: its clefts)."""
        return None

    def candidates(self, vol: TrainingVolume, run: RunPlan) -> PrunerCandidates:
        """The candidate pairs of a volume, labelled by its partner table."""
        return PrunerCandidates(
            self.settings.kind, vol.image, vol.segmentation, vol.clefts, self.voxel_size_nm,
            partners=vol.partners, proximity=self.proximity(vol, run),
            patch=self.settings.train_patch,
        )  # fmt: skip

    def prepare(
        self, train: Sequence[TrainingVolume], val: Sequence[TrainingVolume], run: RunPlan
    ) -> None:
        super().prepare(train, val, run)
        self.sampler = PrunerSampler([self.candidates(v, run) for v in train])
        self.val_candidates = [self.candidates(v, run) for v in val]

    def example(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        augmentation = self.settings.augmentation
        x, y = self.sampler.draw(rng, positive=index % 2 == 0)
        (x,) = geometric([x], rng, augmentation)
        x[0] = intensity(x[0], rng, augmentation)
        return x, y

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, target.reshape(-1))

    def validate(self, model: LoadedModel, run: RunPlan) -> dict[str, float]:
        return validate_pruner(model, self.val, self.val_candidates, run)

    def tune(self, best: BestModel, run: RunPlan) -> dict[str, Any]:
        return tune_pruner(best(), self.val, self.val_candidates, run)


class ProximityPrunerTask(MaskPrunerTask):
    """The proximity pruner: the mask pruner's training on candidates from the predictions
    of a signed proximity detector, whose weights its model folder keeps
    (:func:`~napari_avan.models.pruners.proximity_files`, checked by sha256)."""

    model_task = "proximity-pruner"

    def __init__(self, settings: TrainSettings, proximity_model: str | Path | None) -> None:
        super().__init__(settings)
        self.proximity_model = proximity_model
        self.detector: LoadedModel | None = None
        self.detector_files: dict[str, bytes] = {}

    def prepare(
        self, train: Sequence[TrainingVolume], val: Sequence[TrainingVolume], run: RunPlan
    ) -> None:
        if self.proximity_model is None:
            raise AvanInputError(
                "the proximity pruner needs its signed proximity detector: train one with "
                "napari-avan train clefts --target proximity and pass --proximity-model"
            )
        self.detector = load_model(self.proximity_model)
        if self.detector.metadata.get("target") != "proximity":
            raise AvanInputError(f"{self.proximity_model} is not a signed proximity detector")
        self.detector_files = proximity_files(self.detector)
        super().prepare(train, val, run)

    def proximity(self, vol: TrainingVolume, run: RunPlan) -> np.ndarray | None:
        assert self.detector is not None, "prepare() loads the detector"
        return proximity_map(self.detector, vol.image, self.voxel_size_nm, run)

    def files(self) -> dict[str, bytes]:
        return self.detector_files

    def metadata(self) -> dict[str, Any]:
        weights = self.detector_files[PROXIMITY_WEIGHTS]
        return {
            "proximity_sha256": hashlib.sha256(weights).hexdigest(),
            "proximity_model": str(self.proximity_model),
        }


def task_for(settings: TrainSettings, *, proximity_model: str | Path | None = None) -> TrainingTask:
    """The training task of ``settings`` (kind and, for the detector, target).

    Args:
        proximity_model: the proximity pruner's signed proximity detector (a model folder);
            other tasks ignore it.
    """
    if settings.kind == "proximity-pruner":
        return ProximityPrunerTask(settings, proximity_model)
    if settings.kind == "mask-pruner":
        return MaskPrunerTask(settings)
    if settings.kind == "avan":
        return AvanTask(settings)
    if settings.target == "proximity":
        return ProximityDetectorTask(settings)
    if settings.target == "cleftnet":
        return CleftNetDetectorTask(settings)
    return CleftDetectorTask(settings)

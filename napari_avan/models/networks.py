"""The networks: the Residual Symmetric U-Net (optionally with a feature augmentor at its
bottleneck), its cleft-detector and AVAN configurations, and the pruner network of the
baselines.

All tensors are (batch, channel, z, y, x). Convolutions are padded so that a network's
output has its input's spatial shape, as long as y and x divide by ``2 ** (levels - 1)``.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from napari_avan.types import AvanInputError

NORMS = ("batch", "group")
ACTIVATIONS = ("relu", "elu")
#: Output channels of each cleft-detector target.
DETECTOR_TARGETS = {"mask": 1, "proximity": 1, "cleftnet": 2}


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`ResidualSymmetricUNet`.

    Attributes:
        in_channels, out_channels: channels of the input and the output.
        widths: feature channels per level, finest first (one pooling between levels).
        norm: ``"batch"`` (BatchNorm; folded into the convolutions for inference, so it
            costs nothing there) or ``"group"`` (GroupNorm, batch-size independent, but it
            runs as a separate pass at inference).
        groups: GroupNorm groups (must divide every width).
        io_kernel: kernel of the anisotropic input and output convolutions.
        act: ``"relu"`` or ``"elu"``. ReLU is several times cheaper than ELU on the CPU
            under bf16; model metadata written without this key meant ELU.
        augmentor: learned queries of a :class:`FeatureAugmentor` at the coarsest level
            (0: none, the default; metadata written without this key meant none).
    """

    in_channels: int = 1
    out_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64, 128)
    norm: str = "batch"
    groups: int = 8
    io_kernel: tuple[int, int, int] = (1, 5, 5)
    act: str = "relu"
    augmentor: int = 0

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_channels < 1:
            raise AvanInputError("a network needs at least one input and one output channel")
        if not self.widths or min(self.widths) < 1:
            raise AvanInputError(f"widths {self.widths!r} must be positive channel counts")
        if self.norm not in NORMS:
            raise AvanInputError(f"norm {self.norm!r} is not one of {NORMS}")
        if self.act not in ACTIVATIONS:
            raise AvanInputError(f"activation {self.act!r} is not one of {ACTIVATIONS}")
        if self.norm == "group" and any(w % self.groups for w in self.widths):
            raise AvanInputError(f"GroupNorm groups {self.groups} must divide every width")
        if len(self.io_kernel) != 3 or any(k % 2 == 0 for k in self.io_kernel):
            raise AvanInputError(f"io_kernel {self.io_kernel!r} must be three odd sizes")
        queries = self.augmentor
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 0:
            raise AvanInputError(
                f"augmentor (the feature augmentor's learned queries) must be a whole number "
                f">= 0 (0: none), got {queries!r}"
            )

    @property
    def levels(self) -> int:
        return len(self.widths)

    @property
    def divisor(self) -> tuple[int, int, int]:
        """Input (z, y, x) sizes must be multiples of this."""
        step = 2 ** (self.levels - 1)
        return (1, step, step)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        data["io_kernel"] = list(self.io_kernel)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise AvanInputError(f"unknown network option(s) {unknown} in the model metadata")
        values = dict(data)
        values.setdefault("act", "elu")  # metadata from before the option existed
        values.setdefault("augmentor", 0)  # likewise: no feature augmentor
        if "widths" in values:
            values["widths"] = tuple(int(w) for w in values["widths"])
        if "io_kernel" in values:
            k = [int(v) for v in values["io_kernel"]]
            values["io_kernel"] = (k[0], k[1], k[2])
        return cls(**values)


def _norm(config: UNetConfig, channels: int) -> nn.Module:
    if config.norm == "batch":
        return nn.BatchNorm3d(channels)
    return nn.GroupNorm(config.groups, channels)


def _act(config: UNetConfig) -> nn.Module:
    return nn.ReLU(inplace=True) if config.act == "relu" else nn.ELU(inplace=True)


def _same_pad(kernel: tuple[int, int, int]) -> tuple[int, int, int]:
    return (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)


class ResidualBlock(nn.Module):
    """A 3x3x3 convolution into a residual pair of 3x3x3 convolutions."""

    def __init__(self, config: UNetConfig, in_channels: int, channels: int) -> None:
        super().__init__()
        k = (3, 3, 3)
        self.entry = nn.Sequential(
            nn.Conv3d(in_channels, channels, k, padding=_same_pad(k)),
            _norm(config, channels),
            _act(config),
        )
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, k, padding=_same_pad(k)),
            _norm(config, channels),
            _act(config),
            nn.Conv3d(channels, channels, k, padding=_same_pad(k)),
            _norm(config, channels),
        )
        self.act = _act(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        return self.act(x + self.body(x))


class ResizeConv(nn.Module):
    """Upsample in-plane by 2 with a fixed interpolation, then a 1x1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(x)


class FeatureAugmentor(nn.Module):
    """A global attention block with learned queries, after CleftNet's feature augmentor.

    Liu & Ji 2021 ("CleftNet: Augmented Deep Learning for Synaptic Cleft Detection from
    Brain EM", IEEE TMI) describe a feature augmentor that "can fuse global information from
    inputs and learn common morphological patterns in clefts" and "can generate outputs
    with varying dimensions". This block is OUR reading of that description, written from
    it, not a reproduction of the paper's code:

    - the common patterns are ``queries`` learned vectors Q (``queries`` x C);
    - the global information: every position's features give a key and a value (1x1x1
      convolutions, K and V, N positions), and each pattern gathers a summary of the whole
      input, S = softmax over positions (Q K^T / sqrt(C)) V, (batch, queries, C);
    - each position then reads the summaries: its own projected feature (a third 1x1x1
      convolution) attends over the patterns Q (softmax over the queries), and takes the
      weighted sum of their summaries S, (batch, C, z, y, x);
    - a 1x1x1 output convolution, zero at initialisation, adds this to the input:
      ``out = x + proj(read)``. A fresh block therefore leaves its input unchanged, so a
      network fine-tuned from one without the block starts from what it computed.

    The output has the input's shape whatever the spatial size (the queries do not depend
    on it). Cost and memory grow linearly with the positions (N x queries, no N x N map).
    The attention weights are computed in float32, also under bf16 autocast.
    """

    def __init__(self, channels: int, queries: int) -> None:
        super().__init__()
        if channels < 1 or queries < 1:
            raise AvanInputError(
                f"a feature augmentor needs channels and queries >= 1, got {channels}, {queries}"
            )
        self.key = nn.Conv3d(channels, channels, 1)
        self.value = nn.Conv3d(channels, channels, 1)
        self.read = nn.Conv3d(channels, channels, 1)
        self.queries = nn.Parameter(torch.randn(queries, channels) / channels**0.5)
        self.proj = nn.Conv3d(channels, channels, 1)
        for parameter in self.proj.parameters():  # zero output: the input passes unchanged
            nn.init.zeros_(parameter)
        self.scale = channels**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        keys = self.key(x).flatten(2)  # (B, C, N)
        values = self.value(x).flatten(2)  # (B, C, N)
        own = self.read(x).flatten(2)  # (B, C, N)
        patterns = self.queries.to(keys.dtype)  # (Q, C)
        # each pattern gathers the whole input: softmax over the N positions
        gather = torch.einsum("qc,bcn->bqn", patterns, keys).float() * self.scale
        gather = torch.softmax(gather, dim=-1).to(values.dtype)
        summary = torch.einsum("bqn,bcn->bqc", gather, values)  # (B, Q, C)
        # each position reads the summaries of the patterns it resembles: softmax over Q
        reading = torch.einsum("qc,bcn->bqn", patterns, own).float() * self.scale
        reading = torch.softmax(reading, dim=1).to(summary.dtype)
        read = torch.einsum("bqn,bqc->bcn", reading, summary).reshape(batch, channels, *spatial)
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            read = read.contiguous(memory_format=torch.channels_last_3d)
        return x + self.proj(read)


class ResidualSymmetricUNet(nn.Module):
    """Residual Symmetric U-Net; returns logits. With ``config.augmentor`` > 0, a
    :class:`FeatureAugmentor` refines the features of the coarsest level (the bottleneck)."""

    augmentor: FeatureAugmentor | None

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        widths = config.widths
        self.input = nn.Sequential(
            nn.Conv3d(
                config.in_channels, widths[0], config.io_kernel, padding=_same_pad(config.io_kernel)
            ),
            _norm(config, widths[0]),
            _act(config),
        )
        self.down = nn.ModuleList(
            ResidualBlock(config, widths[max(0, i - 1)], w) for i, w in enumerate(widths)
        )
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.up = nn.ModuleList(
            ResizeConv(widths[i + 1], widths[i]) for i in range(len(widths) - 1)
        )
        self.up_blocks = nn.ModuleList(
            ResidualBlock(config, widths[i], widths[i]) for i in range(len(widths) - 1)
        )
        self.output = nn.Conv3d(
            widths[0], config.out_channels, config.io_kernel, padding=_same_pad(config.io_kernel)
        )
        # made last, so that the other layers of a seeded network draw the same weights
        # with or without it
        self.augmentor = (
            FeatureAugmentor(widths[-1], config.augmentor) if config.augmentor else None
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise AvanInputError when ``x`` cannot pass through the network unchanged in size."""
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise AvanInputError(
                f"network input must be (batch, {self.config.in_channels}, z, y, x), "
                f"got {tuple(x.shape)}"
            )
        for size, div, axis in zip(x.shape[2:], self.config.divisor, "zyx", strict=True):
            if size % div:
                raise AvanInputError(
                    f"patch size {size} along {axis} is not a multiple of {div}: "
                    "pad or choose another patch shape"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.input(x)
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        if self.augmentor is not None:  # the bottleneck: the coarsest level's features
            x = self.augmentor(x)
        for level in reversed(range(len(self.up))):
            x = self.up[level](x) + skips[level]
            x = self.up_blocks[level](x)
        return self.output(x)


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """An inference copy of ``network`` with every BatchNorm folded into its convolution.

    A BatchNorm3d that directly follows a Conv3d inside an ``nn.Sequential`` becomes part of
    that convolution's weights and bias (eval-mode statistics), so it costs nothing at run
    time. ``network`` itself is left untouched; without BatchNorm it is returned as is.
    """
    if not any(isinstance(m, nn.BatchNorm3d) for m in network.modules()):
        return network
    folded = copy.deepcopy(network).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for name, following in itertools.pairwise(names):
            conv, norm = module._modules[name], module._modules[following]
            if isinstance(conv, nn.Conv3d) and isinstance(norm, nn.BatchNorm3d):
                module._modules[name] = fuse_conv_bn_eval(conv, norm)
                module._modules[following] = nn.Identity()
    return folded


def cleft_detector_config(
    target: str = "mask",
    widths: tuple[int, ...] = (16, 32, 64, 128),
    norm: str = "batch",
    augmentor: int = 0,
) -> UNetConfig:
    """The cleft detector: one input channel; outputs per ``target`` (``DETECTOR_TARGETS``);
    ``augmentor`` learned queries of a :class:`FeatureAugmentor` at the bottleneck (0: none)."""
    if target not in DETECTOR_TARGETS:
        raise AvanInputError(f"detector target {target!r} is not one of {sorted(DETECTOR_TARGETS)}")
    return UNetConfig(1, DETECTOR_TARGETS[target], widths, norm, augmentor=augmentor)


def avan_config(widths: tuple[int, ...] = (16, 32, 64), norm: str = "batch") -> UNetConfig:
    """AVAN: image and one cleft's mask in, presynaptic and postsynaptic logits out.

    One level fewer than the detector, as in the paper.
    """
    return UNetConfig(2, 2, widths, norm)


@dataclass(frozen=True)
class PrunerConfig:
    """Architecture of a :class:`PrunerNet` (mask and proximity pruner baselines)."""

    in_channels: int = 4
    widths: tuple[int, ...] = (16, 32, 64)
    hidden: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "widths": list(self.widths), "hidden": self.hidden}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrunerConfig:
        try:
            return cls(
                int(data["in_channels"]), tuple(int(w) for w in data["widths"]), int(data["hidden"])
            )
        except (KeyError, TypeError, ValueError) as err:
            raise AvanInputError(f"bad pruner architecture in the model metadata: {err}") from err


class PrunerNet(nn.Module):
    """Candidate classifier: (image, cleft, candidate pre, candidate post) -> one logit."""

    def __init__(self, config: PrunerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PrunerConfig()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for width in config.widths:
            layers += [
                nn.Conv3d(channels, width, (1, 3, 3), padding=(0, 1, 1)),
                nn.ELU(inplace=True),
                nn.Conv3d(width, width, (3, 3, 3), padding=(1, 1, 1)),
                nn.ELU(inplace=True),
                nn.MaxPool3d((1, 2, 2)),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(channels, config.hidden),
            nn.ELU(inplace=True),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise AvanInputError(
                f"pruner input must be (batch, {self.config.in_channels}, z, y, x), "
                f"got {tuple(x.shape)}"
            )
        return self.head(self.features(x)).squeeze(1)

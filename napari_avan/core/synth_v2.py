"""Synthetic EM v2: one generator, randomised per volume over what varies between labs,
scopes and annotators, so that a detector trained on it meets real EM less surprised.

Each seed draws a :class:`~napari_avan.core.synth.SynthConfig` (:func:`v2_config`) and a
grey-level transform (:func:`v2_tone`) from fixed ranges:

- voxel size: in-plane 3 to 10 nm, sections 30 to 60 nm thick;
- membranes 20 to 45 nm thick, neurite radii and tilt, vesicles 30 to 50 nm across and
  their packing, T-bar present (4 in 5), PSD darkness;
- annotation style: thin cleft sheets (CREMI-style: 20 to 35 nm across the membrane, 240
  to 440 nm along it) or blob masks around the release site (as the VNC annotators drew
  them: 80 to 160 nm across, 120 to 300 nm along, and filled by an electron-dense mass of
  darkness 0.45 to 0.8, the T-bar and PSD seen together at section thickness; 50 to 70 % of
  the blob lies on the presynaptic side, the T-bar's);
- pixel noise, blur, brightness drift and staining gradients, missing sections and folds;
- after the generator's tone-mapping onto real ssTEM grey levels, a random contrast and
  gamma.

The physical extent follows the voxel size (a volume of ``shape`` voxels at 3 nm is a
third as wide as one at 9 nm). The same seed gives the same volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_avan.core.synth import SynthConfig, synthesize
from napari_avan.types import AvanInputError, Sample

#: Annotation styles: half of the volumes each, unless one is asked for.
STYLES = ("sheet", "blob")
#: Random-stream salts, so v2 draws do not repeat the generator's own stream of a seed, and
#: the tone's draws are independent of the config's.
_SALT = 0x5EED_0002
_TONE_SALT = 0x5EED_0003


@dataclass(frozen=True)
class Tone:
    """A grey-level transform of a uint8 image: ``255 * ((v / 255 - 0.5) * contrast + 0.5 +
    shift) ** gamma`` (clipped)."""

    contrast: float
    shift: float
    gamma: float

    def apply(self, image: np.ndarray) -> np.ndarray:
        v = (image.astype(np.float32) / 255.0 - 0.5) * self.contrast + 0.5 + self.shift
        v = np.clip(v, 0.0, 1.0) ** self.gamma
        return np.round(v * 255.0).astype(np.uint8)


def _rng(seed: int, salt: int = _SALT) -> np.random.Generator:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise AvanInputError(f"seed {seed!r} must be a non-negative integer")
    return np.random.default_rng([int(seed), salt])


def _check_style(style: str | None) -> None:
    if style is not None and style not in STYLES:
        raise AvanInputError(f"annotation style {style!r} is not one of {', '.join(STYLES)}")


def v2_config(
    seed: int,
    shape: tuple[int, int, int] = (32, 256, 256),
    *,
    polyadic: bool = False,
    style: str | None = None,
) -> tuple[SynthConfig, str]:
    """The generator options of v2 volume ``seed`` and its annotation style.

    ``style`` (``sheet`` or ``blob``) replaces the seed's own draw of the annotation style;
    every other option stays the seed's (the style's own sizes are drawn for the given
    style), so a detector can be trained for the style its annotators draw."""
    _check_style(style)
    rng = _rng(seed)
    u = rng.uniform
    inplane = float(u(3.0, 10.0))
    section = float(u(30.0, 60.0))
    drawn = STYLES[int(rng.integers(len(STYLES)))]
    style = drawn if style is None else style
    membrane = float(u(20.0, 45.0))
    # blobs: short and thick (VNC masks, DESIGN section 9: a median 600 px per section at
    # 4.6 nm, about 140 x 90 nm, up to 6400 voxels); sheets: long and thin (CREMI)
    if style == "sheet":
        cleft, cleft_radius = float(u(20.0, 35.0)), float(u(120.0, 220.0))
    else:
        cleft, cleft_radius = float(u(80.0, 160.0)), float(u(60.0, 150.0))
    bouton = float(u(170.0, 260.0))
    config = SynthConfig(
        shape=shape,
        voxel_size_nm=(section, inplane, inplane),
        polyadic=polyadic,
        cell_radius_nm=float(u(80.0, 140.0)),
        cell_radius_spread=float(u(0.45, 0.8)),
        neurite_tilt=float(u(0.1, 0.5)),
        membrane_thickness_nm=membrane,
        cleft_thickness_nm=cleft,
        cleft_radius_nm=cleft_radius,
        cleft_z_radius_nm=float(u(50.0, 120.0)),
        bouton_radius_nm=bouton,
        vesicle_diameter_nm=float(u(30.0, 50.0)),
        vesicle_density=float(u(0.5, 0.95)),
        vesicle_cloud_radius_nm=float(u(180.0, 320.0)),
        t_bar=bool(rng.random() < 0.8),
        psd_strength=float(u(0.05, 0.45)),
        noise_sd=float(u(3.0, 15.0)),
        blur_sigma_nm=float(u(2.0, 12.0)),
        drift=float(u(0.0, 0.15)),
        missing_section_prob=float(u(0.0, 0.05)),
        defect_prob=float(u(0.0, 0.05)),
        cleft_density=float(u(0.45, 0.8)) if style == "blob" else 0.0,
        cleft_pre_share=float(u(0.5, 0.7)) if style == "blob" else 0.5,
    )
    return config, style


def v2_tone(seed: int) -> Tone:
    """The grey-level transform of v2 volume ``seed`` (after the generator's own)."""
    rng = _rng(seed, _TONE_SALT)
    return Tone(
        contrast=float(rng.uniform(0.7, 1.3)),
        shift=float(rng.uniform(-0.08, 0.08)),
        gamma=float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))),
    )


def synthesize_v2(
    seed: int,
    shape: tuple[int, int, int] = (32, 256, 256),
    *,
    polyadic: bool = False,
    style: str | None = None,
) -> Sample:
    """A v2 volume: :func:`~napari_avan.core.synth.synthesize` with :func:`v2_config`, its
    image passed through :func:`v2_tone`; ``attrs`` records ``variant``, ``style`` and
    ``tone``. ``style``: as in :func:`v2_config` (None: the seed's own)."""
    config, style = v2_config(seed, shape, polyadic=polyadic, style=style)
    sample = synthesize(config, seed=seed)
    tone = v2_tone(seed)
    sample.image = tone.apply(sample.image)
    attrs: dict[str, Any] = dict(sample.attrs or {})
    attrs.update(variant="v2", style=style, tone=tone.__dict__.copy())
    sample.attrs = attrs
    return sample

"""Synthetic serial-section EM with exact synapse ground truth.

``synthesize`` builds an anisotropic volume of packed neurites (tubes running through z, cut by
a warped, weighted Voronoi diagram in every section), dark membranes of a given thickness, and
synapses: a thin cleft along the contact between a presynaptic bouton and one (dyadic) or 2-4
(polyadic) small pale postsynaptic profiles, a presynaptic vesicle cloud, an optional T-bar and
a weak postsynaptic density. Distractors: mitochondria, vesicle-free dense
contacts, dark membrane junctions with small extracellular pockets, vesicle clouds without a
cleft. The image is blurred, made noisy, tone-mapped onto the grey-level histogram of real ssTEM
(the VNC crop ``vnc_stack1_left``), drifts in brightness across sections, and may lose or fold
sections.

Ground truth:

- ``segmentation`` (uint32): every voxel belongs to a neurite segment, except small
  extracellular pockets at some membrane junctions, which are 0 (turn them off with
  ``extracellular_pockets=False``). Each segment is 6-connected; ids are shuffled.
- ``clefts`` (uint32, ids 1..N): a band ``cleft_thickness_nm`` wide centred on the membrane
  between the pre and its posts, with the same width on both sides, so the mask alone does not
  tell pre from post; the vesicles and the T-bar in the image do.
- ``partners``: one row per pre->post pair (``cleft_id, pre_id, post_id``, uint64). Every partner
  holds voxels of its cleft; pre != post; every cleft has one pre and one post (dyadic) or
  ``posts_per_synapse`` posts (polyadic).

``n_synapses`` is met whenever the volume has room (always at the default size); a volume too
small for them gets fewer, and ``attrs["counts"]["n_clefts"]`` says how many. Sections lost or
folded by ``missing_section_prob`` / ``defect_prob`` change the image only, never the labels.

Sizes are given in nm and converted with the voxel size, so 40x4x4 nm and 50x4.6x4.6 nm volumes
show the same structures at their own pixel size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError, Sample, check_voxel_size

__all__ = ["GENERATOR_VERSION", "SynthConfig", "synthesize"]

#: Bumped whenever the same config and seed would give different arrays.
GENERATOR_VERSION = "1.0"

#: Smallest in-plane extent (nm): enough for part of a synapse.
_MIN_EXTENT_NM = 120.0
#: Largest volume generated in one call (voxels); larger volumes should be tiled.
_MAX_VOXELS = 2**28
#: Coordinate warps that make membranes wavy: (amplitude, in-plane and z correlation), nm.
_WARP_NM = ((60.0, 300.0, 250.0), (28.0, 100.0, 100.0), (8.0, 35.0, 50.0))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass
class SynthConfig:
    """Options of the synthetic EM generator; physical sizes are in nm.

    Attributes:
        shape: (z, y, x) voxels.
        voxel_size_nm: (z, y, x) nm, e.g. (40, 4, 4) or (50, 4.6, 4.6).
        polyadic: one pre with ``posts_per_synapse`` posts per cleft, else exactly one post.
        posts_per_synapse: (min, max) posts of a polyadic synapse.
        n_synapses: clefts to make; None: about one per 0.15 um^3, at least 2.
        cell_radius_nm: median radius of neurite profiles (log-normal).
        cell_radius_spread: sigma of the log-normal radius distribution.
        neurite_tilt: spread of neurite slopes against z (tan of the angle).
        membrane_thickness_nm: thickness of the dark membranes.
        cleft_thickness_nm: width of the cleft band across the membrane (half on each side).
        cleft_pre_share: share of the cleft band's width on the presynaptic side (0.5: centred;
            the VNC masks put a median 0.57 in one segment, the T-bar's side by the data's
            reading).
        cleft_radius_nm: typical in-plane half length of a cleft.
        cleft_z_radius_nm: typical half extent of a cleft in z.
        bouton_radius_nm: typical radius of a presynaptic bouton.
        vesicle_diameter_nm: outer diameter of synaptic vesicles.
        vesicle_density: fraction of free lattice sites next to the cleft holding a vesicle.
        vesicle_cloud_radius_nm: reach of the vesicle cloud from the cleft.
        t_bar: draw a T-bar density on the presynaptic side.
        psd_strength: darkness of the postsynaptic density (vesicle rings are about 0.55).
        cleft_density: darkness of an electron-dense mass filling the annotated cleft
            region, soft-edged (0: none). Blob annotations, as the VNC annotators drew them,
            outline such a mass: T-bar and PSD seen together at section thickness.
        n_mitochondria: None: about 4 per um^3.
        n_vesicle_clouds: clouds without a cleft; None: about one per 0.4 um^3.
        n_dense_contacts: vesicle-free dense contacts; None: about one per 0.3 um^3.
        extracellular_pockets: small extracellular spaces (label 0) at some junctions.
        noise_sd: pixel noise in grey levels.
        blur_sigma_nm: in-plane Gaussian blur.
        drift: relative brightness/contrast drift across sections and in-plane ramp.
        missing_section_prob: chance that a section's image is blank (0); labels stay.
        defect_prob: chance that a section has a fold (a dark band).
        match_histogram: tone-map onto the real ssTEM grey-level histogram.
    """

    shape: tuple[int, int, int] = (32, 256, 256)
    voxel_size_nm: tuple[float, float, float] = (40.0, 4.0, 4.0)
    polyadic: bool = False
    posts_per_synapse: tuple[int, int] = (2, 4)
    n_synapses: int | None = None
    cell_radius_nm: float = 105.0
    cell_radius_spread: float = 0.65
    neurite_tilt: float = 0.3
    membrane_thickness_nm: float = 30.0
    cleft_thickness_nm: float = 30.0
    cleft_pre_share: float = 0.5
    cleft_radius_nm: float = 170.0
    cleft_z_radius_nm: float = 70.0
    bouton_radius_nm: float = 210.0
    vesicle_diameter_nm: float = 40.0
    vesicle_density: float = 0.8
    vesicle_cloud_radius_nm: float = 250.0
    t_bar: bool = True
    psd_strength: float = 0.2
    cleft_density: float = 0.0
    n_mitochondria: int | None = None
    n_vesicle_clouds: int | None = None
    n_dense_contacts: int | None = None
    extracellular_pockets: bool = True
    noise_sd: float = 7.0
    blur_sigma_nm: float = 5.0
    drift: float = 0.05
    missing_section_prob: float = 0.0
    defect_prob: float = 0.0
    match_histogram: bool = True

    def __post_init__(self) -> None:
        self.shape = _check_shape(self.shape)
        self.voxel_size_nm = check_voxel_size(self.voxel_size_nm, "SynthConfig voxel_size_nm")
        n_z, n_y, n_x = self.shape
        _, vy, vx = self.voxel_size_nm
        if n_y * vy < _MIN_EXTENT_NM or n_x * vx < _MIN_EXTENT_NM:
            raise AvanInputError(
                f"SynthConfig shape {self.shape} at {self.voxel_size_nm} nm is "
                f"{n_y * vy:.0f} x {n_x * vx:.0f} nm in-plane: make y and x at least "
                f"{_MIN_EXTENT_NM:.0f} nm (e.g. 30 px at 4 nm)"
            )
        if n_z * n_y * n_x > _MAX_VOXELS:
            raise AvanInputError(
                f"SynthConfig shape {self.shape} has {n_z * n_y * n_x} voxels, more than "
                f"{_MAX_VOXELS}: generate smaller volumes (e.g. several seeds)"
            )
        for name in ("polyadic", "t_bar", "extracellular_pockets", "match_histogram"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise AvanInputError(f"SynthConfig {name} must be True or False")
        posts = tuple(self.posts_per_synapse)
        if len(posts) != 2 or not all(_is_int(p) for p in posts) or not 2 <= posts[0] <= posts[1]:
            raise AvanInputError(
                f"SynthConfig posts_per_synapse {self.posts_per_synapse!r} must be two integers "
                "(min, max) with 2 <= min <= max <= 6, e.g. (2, 4)"
            )
        if posts[1] > 6:
            raise AvanInputError(
                f"SynthConfig posts_per_synapse {posts!r}: at most 6 posts fit around a bouton"
            )
        self.posts_per_synapse = (int(posts[0]), int(posts[1]))
        for name in ("n_synapses", "n_mitochondria", "n_vesicle_clouds", "n_dense_contacts"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise AvanInputError(
                    f"SynthConfig {name} {value!r} must be a non-negative integer or None (auto)"
                )
            if value is not None:
                setattr(self, name, int(value))
        positive = (
            "cell_radius_nm",
            "membrane_thickness_nm",
            "cleft_thickness_nm",
            "cleft_radius_nm",
            "cleft_z_radius_nm",
            "bouton_radius_nm",
            "vesicle_diameter_nm",
            "vesicle_cloud_radius_nm",
        )
        non_negative = (
            "cell_radius_spread",
            "neurite_tilt",
            "psd_strength",
            "noise_sd",
            "blur_sigma_nm",
            "drift",
        )
        fractions = (
            "vesicle_density",
            "missing_section_prob",
            "defect_prob",
            "cleft_density",
            "cleft_pre_share",
        )
        for name in positive + non_negative + fractions:
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise AvanInputError(f"SynthConfig {name} {value!r} must be a number")
            value = float(value)
            if not math.isfinite(value):
                raise AvanInputError(f"SynthConfig {name} {value!r} must be finite")
            if name in positive and value <= 0:
                raise AvanInputError(f"SynthConfig {name} {value!r} must be positive (nm)")
            if name in non_negative and value < 0:
                raise AvanInputError(f"SynthConfig {name} {value!r} must not be negative")
            if name in fractions and not 0.0 <= value <= 1.0:
                raise AvanInputError(f"SynthConfig {name} {value!r} must be between 0 and 1")
            setattr(self, name, value)
        if not 0.2 <= self.cleft_pre_share <= 0.8:
            raise AvanInputError(
                f"SynthConfig cleft_pre_share {self.cleft_pre_share} must be between 0.2 and 0.8 "
                "(0.5: the band centred on the membrane)"
            )
        if self.membrane_thickness_nm >= self.cell_radius_nm:
            raise AvanInputError(
                f"SynthConfig membrane_thickness_nm {self.membrane_thickness_nm} must be smaller "
                f"than cell_radius_nm {self.cell_radius_nm}"
            )
        if self.vesicle_diameter_nm >= self.bouton_radius_nm:
            raise AvanInputError(
                f"SynthConfig vesicle_diameter_nm {self.vesicle_diameter_nm} must be smaller than "
                f"bouton_radius_nm {self.bouton_radius_nm}"
            )

    @property
    def volume_um3(self) -> float:
        """Volume in cubic micrometres."""
        return float(np.prod(self.shape) * np.prod(self.voxel_size_nm)) / 1e9

    def resolved_counts(self) -> dict[str, int]:
        """Counts of synapses and distractors, with the automatic ones filled in."""
        vol = self.volume_um3

        def pick(value: int | None, per_um3: float, least: int) -> int:
            return int(value) if value is not None else max(least, round(vol * per_um3))

        return {
            "n_synapses": pick(self.n_synapses, 1 / 0.15, 2),
            "n_mitochondria": pick(self.n_mitochondria, 4.0, 1),
            "n_vesicle_clouds": pick(self.n_vesicle_clouds, 1 / 0.4, 1),
            "n_dense_contacts": pick(self.n_dense_contacts, 1 / 0.3, 1),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the options (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _check_shape(shape: Any) -> tuple[int, int, int]:
    try:
        values = tuple(shape)
    except TypeError as err:
        raise AvanInputError(
            f"SynthConfig shape {shape!r} is not three integers: give (z, y, x), "
            "e.g. (32, 256, 256)"
        ) from err
    if len(values) != 3 or not all(_is_int(v) for v in values):
        raise AvanInputError(
            f"SynthConfig shape {shape!r} must be three integers (z, y, x), e.g. (32, 256, 256)"
        )
    if values[0] < 3 or values[1] < 16 or values[2] < 16:
        raise AvanInputError(
            f"SynthConfig shape {tuple(int(v) for v in values)!r} is too small: give at least "
            "3 sections and 16 pixels in y and x"
        )
    return (int(values[0]), int(values[1]), int(values[2]))


def synthesize(config: SynthConfig | None = None, *, seed: int = 0, **overrides: Any) -> Sample:
    """Generate a synthetic EM volume with exact clefts, segments and partners.

    Args:
        config: options; None uses the defaults.
        seed: random seed; the same config and seed give identical arrays.
        **overrides: fields of :class:`SynthConfig` replacing those of ``config``.

    Returns:
        A :class:`~napari_avan.types.Sample` with ``image`` (uint8), ``segmentation`` and
        ``clefts`` (uint32), ``partners`` (DataFrame ``cleft_id, pre_id, post_id``, uint64)
        and ``attrs`` (generator, version, seed, config, resolved counts, damaged sections).

    Raises:
        AvanInputError: on an unknown option, a bad value or a bad seed.
    """
    from napari_avan.core._synth_build import build_sample

    cfg = config if config is not None else SynthConfig()
    if not isinstance(cfg, SynthConfig):
        raise AvanInputError(f"config must be a SynthConfig or None, not {type(cfg).__name__}")
    if overrides:
        names = {f.name for f in dataclasses.fields(SynthConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise AvanInputError(
                f"unknown synthetic option(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(names))}"
            )
        cfg = dataclasses.replace(cfg, **overrides)
    if not _is_int(seed) or seed < 0:
        raise AvanInputError(f"seed {seed!r} must be a non-negative integer")
    return build_sample(cfg, int(seed), warp_nm=_WARP_NM, version=GENERATOR_VERSION)

"""Assembly of a synthetic sample: tubes -> diagram -> labels -> clefts -> image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from napari_avan.core._synth_features import (
    Canvas,
    VesicleStyle,
    draw_dense_contact,
    draw_mitochondrion,
    draw_synapse,
    draw_vesicles,
)
from napari_avan.core._synth_geometry import (
    TubeArrays,
    TubeSet,
    add_background_tubes,
    cell_diagram,
    smooth_field,
)
from napari_avan.core._synth_render import apply_drift, apply_fold, cells_image, tone_map
from napari_avan.core._synth_synapses import (
    SynapsePlan,
    SynapseResult,
    cleft_voxels,
    is_anchored,
    plan_synapses,
    protect_synapses,
    validate_synapse,
)
from napari_avan.types import PARTNER_COLUMNS, Sample

if TYPE_CHECKING:
    from napari_avan.core.synth import SynthConfig


@dataclass
class _Site:
    """A distractor attached to a tube: centre per section = tube centre + offset."""

    tube: int
    z0: int
    offset: np.ndarray
    size_nm: float


def _far_from_sites(
    z_nm: float,
    y: float,
    x: float,
    sites: list[tuple[float, float, float]],
    sep: tuple[float, float],
) -> bool:
    return all(
        ((y - sy) ** 2 + (x - sx) ** 2) / sep[0] ** 2 + (z_nm - sz) ** 2 / sep[1] ** 2 >= 1.0
        for sz, sy, sx in sites
    )


def _pick_hosts(
    rng: np.random.Generator,
    n: int,
    tubes: np.ndarray,
    arrays: TubeArrays,
    z_nm: np.ndarray,
    extent: tuple[float, float],
    sites: list[tuple[float, float, float]],
    min_radius_nm: float,
    used: list[tuple[int, int]],
    sep_nm: tuple[float, float],
) -> list[tuple[int, int]]:
    """Pick ``n`` (tube, section) pairs: wide enough, in view, away from synapse sites.

    Pairs already in ``used`` (and sections near them in the same tube) are avoided; the
    picks are appended to ``used``.
    """
    out: list[tuple[int, int]] = []
    if n <= 0 or tubes.size == 0:
        return out
    cy, cx = arrays.cy[tubes], arrays.cx[tubes]
    ok = (
        arrays.active[tubes]
        & (arrays.r[tubes] >= min_radius_nm)
        & (arrays.elongation[tubes, None] < 1.6)
    )
    ok &= (cy >= 0) & (cy < extent[0]) & (cx >= 0) & (cx < extent[1])
    pairs = np.argwhere(ok)
    for i in rng.permutation(len(pairs)):
        if len(out) >= n:
            break
        j, z = (int(v) for v in pairs[i])
        k = int(tubes[j])
        if any(k == kk and abs(z - zz) < 8 for kk, zz in used):
            continue
        if not _far_from_sites(float(z_nm[z]), float(cy[j, z]), float(cx[j, z]), sites, sep_nm):
            continue
        out.append((k, z))
        used.append((k, z))
    return out


def build_sample(
    cfg: SynthConfig,
    seed: int,
    *,
    warp_nm: tuple[tuple[float, float, float], ...],
    version: str,
) -> Sample:
    """Generate one sample; see :func:`napari_avan.core.synth.synthesize`."""
    import cc3d
    import pandas as pd

    shape = cfg.shape
    vox = cfg.voxel_size_nm
    n_z, n_y, n_x = shape
    counts = cfg.resolved_counts()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    rng_tubes, rng_syn, rng_warp, rng_tex, rng_feat, rng_noise, rng_art, rng_ids = streams
    z_nm = np.arange(n_z) * vox[0]
    extent = (n_y * vox[1], n_x * vox[2])
    t_nm = cfg.membrane_thickness_nm

    # --- warped pixel coordinates (nm): the geometry lives in this frame
    iy = (np.arange(n_y, dtype=np.float32) * np.float32(vox[1]))[None, :, None]
    ix = (np.arange(n_x, dtype=np.float32) * np.float32(vox[2]))[None, None, :]
    wy = np.broadcast_to(iy, shape).copy()
    wx = np.broadcast_to(ix, shape).copy()
    for amp, corr, corr_z in warp_nm:
        wy += np.float32(amp) * smooth_field(rng_warp, shape, vox, corr, corr_z)
        wx += np.float32(amp) * smooth_field(rng_warp, shape, vox, corr, corr_z)

    # --- geometry: tubes, synapse sites, distractor hosts
    tubes = TubeSet(n_z)
    background = add_background_tubes(
        tubes,
        rng_tubes,
        shape,
        vox,
        cfg.cell_radius_nm,
        cfg.cell_radius_spread,
        cfg.neurite_tilt,
    )
    n_syn = counts["n_synapses"]
    plans: list[SynapsePlan] = []
    if n_syn:
        plans = plan_synapses(
            tubes,
            rng_syn,
            n_candidates=n_syn + max(2, n_syn // 2),
            shape=shape,
            voxel_nm=vox,
            polyadic=cfg.polyadic,
            posts_range=cfg.posts_per_synapse,
            bouton_radius_nm=cfg.bouton_radius_nm,
            cleft_radius_nm=cfg.cleft_radius_nm,
            cleft_z_radius_nm=cfg.cleft_z_radius_nm,
            tilt=cfg.neurite_tilt,
            warped=(wy, wx),
        )
    arrays = tubes.arrays()
    protect_synapses(arrays, plans)
    cy, cx, r = arrays.cy, arrays.cx, arrays.r
    sites = [(float(z_nm[p.z0]), float(p.qy[p.z0]), float(p.qx[p.z0])) for p in plans]
    used: list[tuple[int, int]] = []
    # clouds keep well away from synapses, so vesicles near a cleft are its own
    cloud_hosts = _pick_hosts(
        rng_syn,
        counts["n_vesicle_clouds"],
        background,
        arrays,
        z_nm,
        extent,
        sites,
        100.0,
        used,
        (350.0, 250.0),
    )
    mito_hosts = _pick_hosts(
        rng_syn,
        counts["n_mitochondria"],
        background,
        arrays,
        z_nm,
        extent,
        sites,
        90.0,
        used,
        (200.0, 120.0),
    )

    # --- the cell diagram
    diag = cell_diagram(wy, wx, arrays)

    pocket_field = smooth_field(rng_warp, shape, vox, 120.0, 150.0)
    if cfg.extracellular_pockets:
        reach = np.float32(0.9 * t_nm) * np.clip(pocket_field - 0.3, 0.0, 1.2)
        pocket = (diag.d12 < reach) & (diag.d13 < reach)
        # only small spaces at junctions: drop any pocket larger than a few junctions
        blobs = cc3d.connected_components(pocket, connectivity=6)
        sizes = np.bincount(blobs.ravel())
        big = sizes > 4.0 * np.pi * (1.1 * t_nm) ** 2 / (vox[1] * vox[2])
        big[0] = False
        pocket &= ~big[blobs]
        del blobs
    else:
        pocket = np.zeros(shape, bool)

    # --- segmentation: tubes split into 6-connected pieces, ids shuffled
    lab = (diag.k1 + 1).astype(np.uint32)
    lab[pocket] = 0
    pieces = cc3d.connected_components(lab, connectivity=6, out_dtype=np.uint32)
    n_seg = int(pieces.max())
    lut = np.concatenate([[0], rng_ids.permutation(n_seg) + 1]).astype(np.uint32)
    segmentation = lut[pieces]
    del lab, pieces

    # --- clefts and partners
    half = cfg.cleft_thickness_nm / 2
    margin_nm = 3.0 * sum(w[0] for w in warp_nm) + 30.0
    min_voxels = max(8, math.ceil(60.0 * half / (vox[1] * vox[2])))
    taken = np.zeros(shape, bool)
    results: list[SynapseResult] = []
    for plan in plans:
        if len(results) >= n_syn:
            break
        band_nm = (2 * half * cfg.cleft_pre_share, 2 * half * (1.0 - cfg.cleft_pre_share))
        coords, t1, t2 = cleft_voxels(plan, diag, wy, wx, pocket, vox, band_nm, margin_nm)
        if not is_anchored(plan, coords, wy, wx, tol_nm=half + 15.0):
            continue
        res = validate_synapse(
            plan,
            coords,
            t1,
            t2,
            segmentation,
            taken,
            min_voxels=min_voxels,
            min_posts=cfg.posts_per_synapse[0] if cfg.polyadic else 1,
        )
        if res is not None:
            taken[res.coords[0], res.coords[1], res.coords[2]] = True
            results.append(res)
    del taken
    results.sort(key=lambda s: tuple(s.coords.mean(axis=1)))
    clefts = np.zeros(shape, np.uint32)
    rows: list[tuple[int, int, int]] = []
    for cleft_id, res in enumerate(results, start=1):
        clefts[res.coords[0], res.coords[1], res.coords[2]] = cleft_id
        rows += [(cleft_id, res.pre_id, post) for post in res.post_ids]
    table = np.array(rows, dtype=np.uint64).reshape(-1, 3)
    partners = pd.DataFrame({name: table[:, i] for i, name in enumerate(PARTNER_COLUMNS)})

    # --- image
    base, dark = cells_image(
        diag, pocket, arrays.brightness, rng_tex, voxel_nm=vox, membrane_thickness_nm=t_nm
    )
    canvas = Canvas(dark, diag, wy, wx, segmentation, pocket, vox, t_nm, margin_nm)
    style = VesicleStyle(cfg.vesicle_diameter_nm, cfg.vesicle_density, cfg.vesicle_cloud_radius_nm)
    for res in results:
        draw_synapse(
            canvas, rng_feat, res, vesicles=style, t_bar=cfg.t_bar, psd_strength=cfg.psd_strength
        )
    for k, z0 in cloud_hosts:
        phi = rng_feat.uniform(0, 2 * np.pi)
        offset = 0.4 * r[k, z0] * np.array([np.sin(phi), np.cos(phi)])
        cloud = VesicleStyle(
            cfg.vesicle_diameter_nm,
            0.9 * cfg.vesicle_density,
            min(cfg.vesicle_cloud_radius_nm, 0.9 * float(r[k, z0])),
        )
        for z in np.flatnonzero(np.abs(z_nm - z_nm[z0]) <= max(70.0, 0.6 * vox[0])):
            centre = (float(cy[k, z] + offset[0]), float(cx[k, z] + offset[1]))
            crop = canvas.crop(centre[0], centre[1], cloud.cloud_radius_nm)
            if crop is not None:
                inside = (diag.k1[z][crop] == k) & ~pocket[z][crop]
                draw_vesicles(canvas, rng_feat, int(z), inside, crop, centre, cloud, cloud.density)
    for k, z0 in mito_hosts:
        rk = float(r[k, z0])
        a = min(rng_feat.uniform(0.45, 0.7) * rk, 140.0)
        b = a * rng_feat.uniform(0.5, 0.85)
        phi = rng_feat.uniform(0, 2 * np.pi)
        shift = (rk - a) * rng_feat.uniform(0.0, 0.5) * np.array([np.sin(phi), np.cos(phi)])
        draw_mitochondrion(
            canvas,
            rng_feat,
            k,
            (cy[k] + shift[0], cx[k] + shift[1]),
            z0,
            rng_feat.uniform(100.0, 350.0),
            (a, b),
            rng_feat.uniform(0, np.pi),
        )
    _draw_dense_contacts(canvas, rng_feat, counts["n_dense_contacts"], plans, sites)
    if cfg.cleft_density > 0:
        for res in results:
            _fill_cleft(dark, res.coords, cfg.cleft_density, vox)

    np.clip(dark, 0.0, 0.92, out=dark)
    image = base
    image *= 1.0 - dark
    del dark, canvas
    if cfg.blur_sigma_nm > 0:
        sig = (0.0, cfg.blur_sigma_nm / vox[1], cfg.blur_sigma_nm / vox[2])
        image = ndi.gaussian_filter(image, sig, mode="reflect", truncate=3.0)
    if cfg.noise_sd > 0:
        image += np.float32(cfg.noise_sd) * rng_noise.standard_normal(shape, dtype=np.float32)
    if cfg.match_histogram:
        image = tone_map(image)
    apply_drift(image, rng_art, cfg.drift)
    u_defect = rng_art.random(n_z)
    u_missing = rng_art.random(n_z)
    defective = [int(z) for z in np.flatnonzero(u_defect < cfg.defect_prob)]
    missing = [int(z) for z in np.flatnonzero(u_missing < cfg.missing_section_prob)]
    for zd in defective:
        apply_fold(image, zd, rng_art, rng_art.uniform(12.0, 40.0) / vox[1])
    for zm in missing:
        image[zm] = 0
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    attrs = {
        "generator": "napari_avan.core.synth",
        "version": version,
        "seed": seed,
        "config": cfg.to_dict(),
        "counts": {**counts, "n_clefts": len(results), "n_partner_pairs": len(rows)},
        "missing_sections": missing,
        "defective_sections": defective,
    }
    return Sample(
        image=image_u8,
        segmentation=segmentation,
        clefts=clefts,
        partners=partners,
        voxel_size_nm=vox,
        attrs=attrs,
    )


def _fill_cleft(
    dark: np.ndarray,
    coords: np.ndarray,
    density: float,
    voxel_nm: tuple[float, float, float],
    edge_nm: float = 10.0,
) -> None:
    """Darken one cleft's voxels (``coords``, (3, n)) to ``density``, edges softened in-plane
    by a Gaussian of ``edge_nm``: the electron-dense mass a blob annotation outlines."""
    sig = (0.0, edge_nm / voxel_nm[1], edge_nm / voxel_nm[2])
    pad = [0, math.ceil(3 * sig[1]) + 1, math.ceil(3 * sig[2]) + 1]
    lo = [max(0, int(c.min()) - p) for c, p in zip(coords, pad, strict=True)]
    hi = [min(n, int(c.max()) + 1 + p) for c, n, p in zip(coords, dark.shape, pad, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    mask = np.zeros([b - a for a, b in zip(lo, hi, strict=True)], np.float32)
    mask[coords[0] - lo[0], coords[1] - lo[1], coords[2] - lo[2]] = 1.0
    mass = density * ndi.gaussian_filter(mask, sig, mode="constant", truncate=3.0)
    np.maximum(dark[box], mass, out=dark[box])


def _draw_dense_contacts(
    canvas: Canvas,
    rng: np.random.Generator,
    n: int,
    plans: list[SynapsePlan],
    sites: list[tuple[float, float, float]],
) -> None:
    """Vesicle-free dense contacts on random membranes away from synapses."""
    if n <= 0:
        return
    diag = canvas.diag
    shape = diag.k1.shape
    z_nm = canvas.z_nm
    members = {(p.pre, q) for p in plans for q in p.posts}
    done = 0
    for _ in range(60):
        if done >= n:
            break
        zz = rng.integers(0, shape[0], 256)
        yy = rng.integers(0, shape[1], 256)
        xx = rng.integers(0, shape[2], 256)
        ok = (diag.d12[zz, yy, xx] < 4.0) & (diag.k2[zz, yy, xx] >= 0) & ~canvas.pocket[zz, yy, xx]
        for z, y, x in zip(zz[ok], yy[ok], xx[ok], strict=True):
            a, b = int(diag.k1[z, y, x]), int(diag.k2[z, y, x])
            centre = (float(canvas.wy[z, y, x]), float(canvas.wx[z, y, x]))
            if (a, b) in members or (b, a) in members:
                continue
            if not _far_from_sites(float(z_nm[z]), centre[0], centre[1], sites, (400.0, 250.0)):
                continue
            radius = rng.uniform(60.0, 130.0)
            for zs in np.flatnonzero(np.abs(z_nm - z_nm[z]) <= max(50.0, 0.5 * canvas.voxel_nm[0])):
                draw_dense_contact(canvas, int(zs), (a, b), centre, radius)
            sites.append((float(z_nm[z]), centre[0], centre[1]))
            done += 1
            break

"""Synapse sites for the synthetic EM generator: planning, protection, clefts and partners.

A synapse is built from discs: a presynaptic axon that swells into a bouton around section
``z0``, and one (dyadic) or several (polyadic) small postsynaptic tubes placed tangent to the
bouton. Other tubes are shrunk where they would overlap those discs, so the cell diagram keeps
the contacts. The cleft is the band of width ``cleft_thickness_nm`` centred on the pre/post
membrane, taken on both sides alike by default, so its voxels alone do not say which side is
presynaptic; a ``pre_share`` above one half puts more of the band on the presynaptic side (as
annotators do who paint over the T-bar).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_avan.core._synth_geometry import Diagram, TubeArrays, TubeSet


@dataclass
class SynapsePlan:
    """A planned synapse site (before the diagram decides whether it worked).

    Attributes:
        z0: central section.
        pre: tube index of the presynaptic axon/bouton.
        posts: tube indices of the postsynaptic profiles.
        theta: direction (radians, in the y/x plane) from the bouton centre to the posts.
        l0_nm: in-plane radius of the cleft window in the central section.
        lz_nm: half extent of the cleft in z.
        qy, qx: (Z,) cleft centre per section (nm, warped frame).
        guard: (Z,) sections where the synapse's discs are protected from other tubes.
    """

    z0: int
    pre: int
    posts: list[int]
    theta: float
    l0_nm: float
    lz_nm: float
    qy: np.ndarray
    qx: np.ndarray
    guard: np.ndarray

    def window_nm(self, z: int, z_nm: np.ndarray) -> float:
        """In-plane radius of the cleft window in section ``z`` (0 outside the cleft)."""
        dz = abs(float(z_nm[z] - z_nm[self.z0]))
        if dz > self.lz_nm:
            return 0.0
        return self.l0_nm * float(np.sqrt(max(0.0, 1.0 - 0.6 * (dz / max(self.lz_nm, 1e-6)) ** 2)))


@dataclass
class SynapseResult:
    """A synapse that survived validation.

    Attributes:
        plan: its plan.
        coords: (3, n) voxel coordinates of the cleft.
        pre_id: segment id of the presynaptic partner.
        post_ids: segment ids of the postsynaptic partners.
        post_tubes: tube indices of those posts (same order).
    """

    plan: SynapsePlan
    coords: np.ndarray
    pre_id: int
    post_ids: list[int]
    post_tubes: list[int]


def _unit(theta: float) -> np.ndarray:
    return np.array([np.sin(theta), np.cos(theta)])


def plan_synapses(
    tubes: TubeSet,
    rng: np.random.Generator,
    *,
    n_candidates: int,
    shape: tuple[int, int, int],
    voxel_nm: tuple[float, float, float],
    polyadic: bool,
    posts_range: tuple[int, int],
    bouton_radius_nm: float,
    cleft_radius_nm: float,
    cleft_z_radius_nm: float,
    tilt: float,
    warped: tuple[np.ndarray, np.ndarray],
) -> list[SynapsePlan]:
    """Add the tubes of up to ``n_candidates`` non-overlapping synapse sites to ``tubes``.

    ``warped`` holds the (Z, Y, X) warped pixel coordinates, so that each cleft centre falls on
    a pixel inside the volume.
    """
    n_z, n_y, n_x = shape
    vz, vy, vx = voxel_nm
    z_nm = np.arange(n_z) * vz
    ext = np.array([n_y * vy, n_x * vx])
    plans: list[SynapsePlan] = []
    # discs (per-section centre, radius, where protected) of the plans so far: a new plan
    # may not overlap them, so that every plan keeps its contacts
    disc_y = np.zeros((0, n_z))
    disc_x = np.zeros((0, n_z))
    disc_r = np.zeros((0, n_z))
    disc_on = np.zeros((0, n_z), bool)
    for _ in range(60 * max(n_candidates, 1)):
        if len(plans) >= n_candidates:
            break
        lz = cleft_z_radius_nm * rng.uniform(0.75, 1.35)
        nz_half = int(lz // vz)
        z_lo, z_hi = nz_half, n_z - 1 - nz_half
        if z_lo > z_hi:
            z_lo, z_hi = 0, n_z - 1
        z0 = int(rng.integers(z_lo, z_hi + 1))
        r_b = bouton_radius_nm * rng.uniform(0.8, 1.2)
        theta = float(rng.uniform(0.0, 2 * np.pi))
        if polyadic:
            n_post = int(rng.integers(posts_range[0], posts_range[1] + 1))
            r_posts = rng.uniform(0.3, 0.55, n_post) * cleft_radius_nm + 5.0
        else:
            n_post = 1
            r_posts = np.array([cleft_radius_nm * rng.uniform(0.6, 0.95)])
        halfw = np.arcsin(r_posts / (r_b + r_posts))
        total = 2.0 * halfw.sum() * 1.04
        offsets = -total / 2 + np.cumsum(2.0 * halfw * 1.04) - halfw * 1.04
        chords = 2.0 * r_b * np.abs(np.sin(offsets / 2))
        l0 = max(cleft_radius_nm * rng.uniform(0.8, 1.2), float((chords + 0.8 * r_posts).max()))
        # the cleft centre is drawn in pixels, then moved to the warped frame
        margin = np.minimum(0.6 * l0 + 20.0, ext / 4) / np.array([vy, vx])
        iy, ix = (int(v) for v in rng.uniform(margin, np.array([n_y, n_x]) - margin))
        q0 = np.array([warped[0][z0, iy, ix], warped[1][z0, iy, ix]], dtype=np.float64)
        zc = float(z_nm[z0])
        u = _unit(theta)
        dzs = z_nm - zc
        vel = 0.8 * tilt * rng.standard_normal(2)
        r_ax = rng.uniform(45.0, 85.0)
        sig_b = rng.uniform(100.0, 170.0)
        r_pre = r_ax + (r_b - r_ax) * np.exp(-0.5 * (dzs / sig_b) ** 2)
        b0 = q0 - r_b * u
        pre_cy = b0[0] + vel[0] * dzs
        pre_cx = b0[1] + vel[1] * dzs
        # the axon is a fragment of a few hundred nm around its bouton, like most profiles
        pre_on = np.abs(dzs) <= 2.0 * sig_b + rng.uniform(50.0, 400.0)
        # discs are guarded only around the cleft; elsewhere the tubes take their chances
        guard = np.abs(dzs) <= lz + 0.6 * vz
        new_y, new_x, new_r, new_on = [pre_cy], [pre_cx], [r_pre], [guard]
        for j in range(n_post):
            uj = _unit(theta + float(offsets[j]))
            drift = 0.25 * rng.standard_normal(2)
            reach = lz + rng.uniform(40.0, 160.0)
            dist = r_pre + r_posts[j]
            new_y.append(pre_cy + dist * uj[0] + drift[0] * dzs)
            new_x.append(pre_cx + dist * uj[1] + drift[1] * dzs)
            new_r.append(np.full(n_z, r_posts[j]))
            new_on.append(np.abs(dzs) <= reach)
        ny, nx, nr, non = (np.stack(a) for a in (new_y, new_x, new_r, new_on))
        post_on = non[1:].copy()
        non[1:] &= guard
        if disc_on.shape[0]:
            gap = np.hypot(ny[:, None] - disc_y[None], nx[:, None] - disc_x[None])
            clash = (gap < nr[:, None] + disc_r[None] - 2.0) & non[:, None] & disc_on[None]
            if clash.any():
                continue
        disc_y = np.concatenate([disc_y, ny])
        disc_x = np.concatenate([disc_x, nx])
        disc_r = np.concatenate([disc_r, nr])
        disc_on = np.concatenate([disc_on, non])
        pre = tubes.add(
            pre_cy, pre_cx, r_pre, pre_on, float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1))
        )
        posts = [
            tubes.add(
                ny[j + 1],
                nx[j + 1],
                nr[j + 1],
                post_on[j],
                float(np.clip(rng.normal(1.08, 0.04), 1.0, 1.2)),
            )
            for j in range(n_post)
        ]
        plans.append(
            SynapsePlan(
                z0=z0,
                pre=pre,
                posts=posts,
                theta=theta,
                l0_nm=float(l0),
                lz_nm=float(lz),
                qy=pre_cy + r_pre * u[0],
                qx=pre_cx + r_pre * u[1],
                guard=guard,
            )
        )
    return plans


def protect_synapses(tubes: TubeArrays, plans: list[SynapsePlan], r_min_nm: float = 30.0) -> None:
    """Shrink (in place) the tubes that overlap a synapse's discs, or drop them there.

    With every other disc at most tangent to the bouton and post discs, the diagram gives those
    discs entirely to their own tubes, so the planned contacts exist. Plans are served in
    order: the discs of later plans give way to those of earlier ones.
    """
    cy, cx, r, active = tubes.cy, tubes.cx, tubes.r, tubes.active
    elong = tubes.elongation[:, None]
    exempt = np.zeros(cy.shape, bool)
    for plan in plans:
        # earlier plans have priority: a plan never shrinks the discs another plan guards
        members = np.array([plan.pre, *plan.posts])
        exempt[np.ix_(members, np.flatnonzero(plan.guard))] = True
        for k in members:
            zs = np.flatnonzero(plan.guard & active[k])
            if zs.size == 0:
                continue
            # an elongated profile reaches r * elongation along its long axis
            gap = (np.hypot(cy[:, zs] - cy[k, zs], cx[:, zs] - cx[k, zs]) - r[k, zs]) / elong
            rr = r[:, zs]
            hit = ~exempt[:, zs] & (gap < rr)
            r[:, zs] = np.where(hit, np.maximum(gap, r_min_nm), rr)
            # a tube squeezed to a sliver is left out of those sections instead
            active[:, zs] &= ~(hit & (gap < np.maximum(r_min_nm, 0.4 * rr)))


def cleft_window(
    plan: SynapsePlan,
    z: int,
    z_nm: np.ndarray,
    wy: np.ndarray,
    wx: np.ndarray,
    voxel_nm: tuple[float, float, float],
    margin_nm: float,
    extra_nm: float = 0.0,
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Crop around the cleft centre in section ``z`` and the window mask inside it."""
    radius = plan.window_nm(z, z_nm)
    if radius <= 0:
        return None
    radius += extra_nm
    n_y, n_x = wy.shape[1:]
    reach = radius + margin_nm
    y0 = max(int((plan.qy[z] - reach) / voxel_nm[1]), 0)
    y1 = min(int((plan.qy[z] + reach) / voxel_nm[1]) + 2, n_y)
    x0 = max(int((plan.qx[z] - reach) / voxel_nm[2]), 0)
    x1 = min(int((plan.qx[z] + reach) / voxel_nm[2]) + 2, n_x)
    if y0 >= y1 or x0 >= x1:
        return None
    crop = (slice(y0, y1), slice(x0, x1))
    win = (wy[z][crop] - plan.qy[z]) ** 2 + (wx[z][crop] - plan.qx[z]) ** 2 <= radius**2
    return crop, win


def contact_band(
    k1: np.ndarray,
    k2: np.ndarray,
    d12: np.ndarray,
    pre: int,
    posts: list[int] | np.ndarray,
    half_nm: float | tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-side and post-side voxels within ``half_nm`` of a pre/post membrane (one reach
    for both sides, or (pre side, post side))."""
    pre_nm, post_nm = half_nm if isinstance(half_nm, tuple) else (half_nm, half_nm)
    pre_side = (d12 <= pre_nm) & (k1 == pre) & np.isin(k2, posts)
    post_side = (d12 <= post_nm) & np.isin(k1, posts) & (k2 == pre)
    return pre_side, post_side


def cleft_voxels(
    plan: SynapsePlan,
    diag: Diagram,
    wy: np.ndarray,
    wx: np.ndarray,
    pocket: np.ndarray,
    voxel_nm: tuple[float, float, float],
    half_nm: float | tuple[float, float],
    margin_nm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate cleft voxels of a plan: coordinates (3, n) and their k1, k2 tubes;
    ``half_nm`` is the band's reach from the membrane (both sides, or (pre, post))."""
    z_nm = np.arange(wy.shape[0]) * voxel_nm[0]
    coords: list[np.ndarray] = []
    t1: list[np.ndarray] = []
    t2: list[np.ndarray] = []
    for z in range(wy.shape[0]):
        got = cleft_window(plan, z, z_nm, wy, wx, voxel_nm, margin_nm)
        if got is None:
            continue
        crop, win = got
        k1 = diag.k1[z][crop]
        k2 = diag.k2[z][crop]
        pre_side, post_side = contact_band(k1, k2, diag.d12[z][crop], plan.pre, plan.posts, half_nm)
        sel = win & (pre_side | post_side) & ~pocket[z][crop]
        yy, xx = np.nonzero(sel)
        coords.append(np.stack([np.full(yy.size, z), yy + crop[0].start, xx + crop[1].start]))
        t1.append(k1[sel])
        t2.append(k2[sel])
    if not coords:
        empty = np.zeros(0, np.int64)
        return np.zeros((3, 0), np.int64), empty, empty
    return np.concatenate(coords, axis=1), np.concatenate(t1), np.concatenate(t2)


def validate_synapse(
    plan: SynapsePlan,
    coords: np.ndarray,
    t1: np.ndarray,
    t2: np.ndarray,
    segmentation: np.ndarray,
    taken: np.ndarray,
    *,
    min_voxels: int,
    min_posts: int,
) -> SynapseResult | None:
    """Keep a planned synapse only if its cleft touches the pre and enough posts.

    Each partner tube may have been split into several segments; the one holding most of the
    cleft is the partner and cleft voxels in its other pieces are dropped.
    """
    if coords.shape[1] == 0:
        return None
    ids = segmentation[coords[0], coords[1], coords[2]].astype(np.int64)
    chosen = np.zeros(ids.size, np.int64)
    tube_to_id: dict[int, int] = {}
    for tube in [plan.pre, *plan.posts]:
        sel = (t1 == tube) & (ids != 0)
        if not sel.any():
            continue
        vals, counts = np.unique(ids[sel], return_counts=True)
        tube_to_id[tube] = int(vals[np.argmax(counts)])
        chosen[t1 == tube] = tube_to_id[tube]
    keep = (ids == chosen) & (ids != 0)
    good = [
        t for t in plan.posts if t in tube_to_id and int((keep & (t1 == t)).sum()) >= min_voxels
    ]
    keep &= ((t1 == plan.pre) & np.isin(t2, good)) | np.isin(t1, good)
    if len(good) < min_posts or int((keep & (t1 == plan.pre)).sum()) < min_voxels:
        return None
    coords = coords[:, keep]
    if taken[coords[0], coords[1], coords[2]].any():
        return None
    return SynapseResult(
        plan=plan,
        coords=coords,
        pre_id=tube_to_id[plan.pre],
        post_ids=[tube_to_id[t] for t in good],
        post_tubes=good,
    )


def is_anchored(
    plan: SynapsePlan, coords: np.ndarray, wy: np.ndarray, wx: np.ndarray, tol_nm: float
) -> bool:
    """Whether the cleft passes within ``tol_nm`` of its planned centre in the central section.

    The vesicles and the T-bar are drawn around the planned centre, so a plan whose contact
    moved away (a neighbouring synapse took the space) is not used.
    """
    sel = coords[0] == plan.z0
    if not sel.any():
        return False
    z, y, x = coords[:, sel]
    dist2 = (wy[z, y, x] - plan.qy[plan.z0]) ** 2 + (wx[z, y, x] - plan.qx[plan.z0]) ** 2
    return bool(dist2.min() <= tol_nm**2)

"""Render a synthetic EM slice next to a real ssTEM slice, raw and with labels overlaid.

Shows what ``napari_avan.core.synth.synthesize`` makes at the real data's voxel size
(50 x 4.6 x 4.6 nm). Left two panels: a real section of the Drosophila VNC crop in
``../shared/data``; right two: a synthetic polyadic section. Each is shown raw, then with segment
borders (yellow), clefts (cyan), presynaptic cells (magenta) and postsynaptic cells (green).
Writes one PNG with numpy and imageio only.
Run ``python examples/render_synth_slice.py [--out PNG] [--seed N]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd

from napari_avan.core.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "vnc_stack1_left"
PANEL = 256  # pixels per panel side
GAP = 6


def best_view(clefts: np.ndarray, size: int) -> tuple[int, int, int]:
    """Section and top-left corner of the ``size`` crop holding the most cleft voxels."""
    counts = (clefts > 0).reshape(clefts.shape[0], -1).sum(axis=1)
    z = int(np.argmax(counts))
    ys, xs = np.nonzero(clefts[z])
    n_y, n_x = clefts.shape[1:]
    if ys.size == 0:
        return z, max(0, (n_y - size) // 2), max(0, (n_x - size) // 2)
    y0 = int(np.clip(np.median(ys) - size // 2, 0, max(0, n_y - size)))
    x0 = int(np.clip(np.median(xs) - size // 2, 0, max(0, n_x - size)))
    return z, y0, x0


def overlay(image: np.ndarray, seg: np.ndarray, clefts: np.ndarray, partners: pd.DataFrame):
    """RGB panel: image with pre/post tints, segment borders and clefts."""
    rgb = np.repeat(image[..., None].astype(np.float32), 3, axis=2)
    pre = np.isin(seg, partners["pre_id"].to_numpy(np.int64))
    post = np.isin(seg, partners["post_id"].to_numpy(np.int64)) & ~pre
    for mask, colour in ((pre, (255, 0, 255)), (post, (0, 220, 0))):
        rgb[mask] = 0.65 * rgb[mask] + 0.35 * np.array(colour, np.float32)
    border = np.zeros(seg.shape, bool)
    border[:-1] |= seg[:-1] != seg[1:]
    border[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    rgb[border] = 0.3 * rgb[border] + 0.7 * np.array((255, 220, 0), np.float32)
    cleft = clefts > 0
    rgb[cleft] = 0.25 * rgb[cleft] + 0.75 * np.array((0, 230, 255), np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def panels(image, seg, clefts, partners, size: int) -> list[np.ndarray]:
    """Raw and overlaid crops (size x size) of the best section."""
    z, y0, x0 = best_view(clefts, size)
    crop = (z, slice(y0, y0 + size), slice(x0, x0 + size))
    raw = np.repeat(image[crop][..., None], 3, axis=2)
    return [raw, overlay(image[crop], seg[crop], clefts[crop], partners)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "synth_vs_real.png"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    voxel = (50.0, 4.6, 4.6)
    sample = synthesize(
        seed=args.seed, shape=(12, PANEL, PANEL), voxel_size_nm=voxel, polyadic=True
    )
    rows: list[list[np.ndarray]] = []
    if (REAL / "vnc_left.npz").exists():
        with np.load(REAL / "vnc_left.npz") as real:
            image, seg, clefts = real["image"], real["segmentation"], real["clefts"]
        partners = pd.read_csv(REAL / "partners.csv")
        rows.append(panels(image, seg, clefts, partners, PANEL))
    else:
        print(f"real data not found at {REAL}: rendering the synthetic slice only")
    rows.append(panels(sample.image, sample.segmentation, sample.clefts, sample.partners, PANEL))
    tiles = [tile for pair in rows for tile in pair]
    canvas = np.full((PANEL, len(tiles) * (PANEL + GAP) - GAP, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        left = i * (PANEL + GAP)
        canvas[:, left : left + PANEL] = tile
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, canvas, compress_level=9)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

"""Render a synthetic EM slice next to a real ssTEM slice, raw and with labels.

Shows what ``synthesize`` makes at the real data's voxel size (50 x 4.6 x 4.6 nm):
segment borders in yellow, clefts in cyan, presynaptic cells tinted magenta and
postsynaptic cells green. Run ``python examples/render_synth_slice.py [--out PNG]``;
the real crop is read from ../shared/data beside the repository (never copied).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_avan.core.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "vnc_stack1_left" / "vnc_left.npz"
SIZE = 320


def overlay(image: np.ndarray, seg: np.ndarray, clefts: np.ndarray, partners) -> np.ndarray:
    """Grey slice to RGB with borders, clefts and partner tints."""
    rgb = np.repeat(image[..., None], 3, axis=-1).astype(np.float64)
    present = set(np.unique(clefts[clefts > 0]).tolist())
    for row in partners.itertuples(index=False):
        if int(row.cleft_id) in present:
            for seg_id, colour, alpha in (
                (row.pre_id, (255, 0, 255), 0.4),
                (row.post_id, (0, 255, 0), 0.3),
            ):
                cell = seg == int(seg_id)
                rgb[cell] = rgb[cell] * (1 - alpha) + np.array(colour) * alpha
    border = np.zeros(seg.shape, bool)
    border[1:] |= seg[1:] != seg[:-1]
    border[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    rgb[border & (seg > 0)] = (255, 230, 0)
    rgb[clefts > 0] = (0, 255, 255)
    return rgb.astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "synth_vs_real.png"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    import imageio.v3 as iio
    import pandas as pd

    sample = synthesize(
        seed=args.seed, polyadic=True, shape=(20, SIZE, SIZE), voxel_size_nm=(50, 4.6, 4.6)
    )
    z = int(np.argmax((sample.clefts > 0).sum(axis=(1, 2))))
    synth = [
        sample.image[z],
        overlay(sample.image[z], sample.segmentation[z], sample.clefts[z], sample.partners),
    ]
    panels = []
    if REAL.exists():
        real = np.load(REAL)
        partners = pd.read_csv(REAL.parent / "partners.csv")
        # the section and window around the largest real synapse
        cz, cy, cx = (int(v) for v in np.argwhere(real["clefts"] == 1).mean(axis=0))
        y0 = int(np.clip(cy - SIZE // 2, 0, real["image"].shape[1] - SIZE))
        x0 = int(np.clip(cx - SIZE // 2, 0, real["image"].shape[2] - SIZE))
        window = (cz, slice(y0, y0 + SIZE), slice(x0, x0 + SIZE))
        image = real["image"][window]
        panels += [
            image,
            overlay(image, real["segmentation"][window], real["clefts"][window], partners),
        ]
    panels += synth
    gap = np.full((SIZE, 8, 3), 255, np.uint8)
    row = []
    for panel in panels:
        rgb = panel if panel.ndim == 3 else np.repeat(panel[..., None], 3, axis=-1)
        row += [rgb.astype(np.uint8), gap]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, np.concatenate(row[:-1], axis=1))
    print(
        f"wrote {out} ({'real | real labelled | ' if REAL.exists() else ''}"
        "synthetic | synthetic labelled)"
    )


if __name__ == "__main__":
    main()

"""Render a gallery of synthetic EM v2 sections: one per seed, each with its own drawn
voxel size, membranes, vesicles, contrast and annotation style (cleft outlines in red).

Shows what ``napari_avan.core.synth_v2.synthesize_v2`` varies from volume to volume (see
its module docstring). Each panel is the 256 x 256 crop holding the most cleft voxels of
the section with the most, at the volume's own voxel size; the printed lines say each
panel's seed, style and voxel size. Writes one PNG with numpy and imageio only.
Run ``python examples/render_synth_v2.py [--out PNG] [--seeds 8]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage

from napari_avan.core.synth_v2 import synthesize_v2

REPO = Path(__file__).resolve().parents[1]
PANEL = 256
GAP = 6
SHAPE = (16, 320, 320)


def panel(seed: int) -> tuple[np.ndarray, str]:
    """The seed's best section crop as RGB with cleft outlines, and its caption."""
    s = synthesize_v2(seed, SHAPE)
    z = int(np.argmax((s.clefts > 0).sum(axis=(1, 2))))
    mask = s.clefts[z] > 0
    counts = ndimage.uniform_filter(mask.astype(np.float32), PANEL, mode="constant")
    half = PANEL // 2
    inner = counts[half : SHAPE[1] - half + 1, half : SHAPE[2] - half + 1]
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    crop = (slice(y, y + PANEL), slice(x, x + PANEL))
    rgb = np.repeat(s.image[z][crop][..., None], 3, axis=2)
    edge = mask[crop] & ~ndimage.binary_erosion(mask[crop], iterations=2)
    rgb[edge] = (230, 40, 40)
    nm = s.voxel_size_nm
    return rgb, f"seed {seed}: {s.attrs['style']}, {nm[0]:.0f} x {nm[1]:.1f} x {nm[2]:.1f} nm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "synth_v2.png"))
    parser.add_argument("--seeds", type=int, default=8, help="panels, seeds 0.. (default 8)")
    args = parser.parse_args()
    cols = min(4, args.seeds)
    rows = -(-args.seeds // cols)
    canvas = np.full((rows * (PANEL + GAP) - GAP, cols * (PANEL + GAP) - GAP, 3), 255, np.uint8)
    for seed in range(args.seeds):
        rgb, caption = panel(seed)
        r, c = divmod(seed, cols)
        canvas[r * (PANEL + GAP) : r * (PANEL + GAP) + PANEL,
               c * (PANEL + GAP) : c * (PANEL + GAP) + PANEL] = rgb  # fmt: skip
        print(f"row {r + 1}, column {c + 1}: {caption}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, canvas)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

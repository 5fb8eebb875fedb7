"""Cleft thumbnails on small hand-built volumes: the section, crop, tints, outline, padding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_avan.core.thumbnails import (
    OUTLINE_RGB,
    TINT_ALPHA,
    cleft_thumbnail,
)
from napari_avan.types import AvanInputError

YELLOW = np.array(OUTLINE_RGB, dtype=np.uint8)
CLEFT = 7
PRE, POST, OTHER = 1, 2, 3


def _volumes(shape: tuple[int, int, int] = (5, 80, 80)) -> tuple[np.ndarray, ...]:
    """Random EM; segment 1 left of x = 40, 2 right of it, 3 above y = 20; cleft 7 a
    12 x 8 rectangle on section 2 (y 34..46, x 36..44), its box centred at (40, 40)."""
    rng = np.random.default_rng(0)
    image = rng.integers(20, 236, size=shape, dtype=np.uint8)
    seg = np.full(shape, PRE, dtype=np.uint32)
    seg[:, :, 40:] = POST
    seg[:, :20, :] = OTHER
    clefts = np.zeros(shape, dtype=np.uint32)
    clefts[2, 34:46, 36:44] = CLEFT
    return image, seg, clefts


BOX = (2, 34, 36, 3, 46, 44)
# With a 12-voxel larger side the crop is the minimum, 48 voxels, from (16, 16): at
# size=48 tile pixel (i, j) is voxel (16 + i, 16 + j).
ORIGIN = 16


def _is_yellow(tile: np.ndarray) -> np.ndarray:
    return np.all(tile == YELLOW, axis=-1)


def _ring(mask: np.ndarray) -> np.ndarray:
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    return mask & ~inner


def test_tile_shape_dtype_and_default_size() -> None:
    image, seg, clefts = _volumes()
    tile = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, [PRE], [POST])
    assert tile.shape == (96, 96, 3)
    assert tile.dtype == np.uint8
    small = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, [PRE], [POST], size=32)
    assert small.shape == (32, 32, 3)


def test_outline_on_the_boundary_not_the_interior() -> None:
    image, seg, clefts = _volumes()
    tile = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, [PRE], [POST], size=48)
    cleft = clefts[2, ORIGIN : ORIGIN + 48, ORIGIN : ORIGIN + 48] == CLEFT
    ring = _ring(cleft)
    yellow = _is_yellow(tile)
    np.testing.assert_array_equal(yellow, ring)
    assert ring.sum() == 2 * (12 + 8) - 4
    interior = cleft & ~ring
    assert interior.sum() == 10 * 6
    assert not yellow[interior].any()


def test_outline_stays_one_pixel_when_enlarged_and_thin_clefts_survive_shrinking() -> None:
    image, seg, clefts = _volumes()
    big = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, size=96)
    cleft = np.repeat(np.repeat(clefts[2, 16:64, 16:64] == CLEFT, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(_is_yellow(big), _ring(cleft))

    thin = np.zeros_like(clefts)
    thin[2, 30:50, 40] = CLEFT  # one voxel wide
    tile = cleft_thumbnail(image, thin, seg, CLEFT, (2, 30, 40, 3, 50, 41), size=16)
    rows, cols = np.nonzero(_is_yellow(tile))
    assert rows.size >= 5  # the line is still drawn after shrinking 48 -> 16
    assert set(cols.tolist()) <= {7, 8}


def test_pre_magenta_post_green_others_grey() -> None:
    image, seg, clefts = _volumes()
    plain = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, (), (), size=48).astype(float)
    tile = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, [PRE], [POST], size=48).astype(float)
    crop = seg[2, ORIGIN : ORIGIN + 48, ORIGIN : ORIGIN + 48]
    not_cleft = ~_is_yellow(tile.astype(np.uint8))
    grey = plain[..., 0]
    np.testing.assert_array_equal(plain[..., 0], plain[..., 1])  # untinted: grey

    pre = (crop == PRE) & not_cleft
    post = (crop == POST) & not_cleft
    other = (crop == OTHER) & not_cleft
    assert pre.sum() > 300 and post.sum() > 300 and other.sum() > 100
    keep, add = 1.0 - TINT_ALPHA, 255.0 * TINT_ALPHA
    # magenta: red and blue raised, green darkened
    np.testing.assert_allclose(tile[pre][:, 0], grey[pre] * keep + add, atol=1.0)
    np.testing.assert_allclose(tile[pre][:, 2], grey[pre] * keep + add, atol=1.0)
    np.testing.assert_allclose(tile[pre][:, 1], grey[pre] * keep, atol=1.0)
    # green: green raised, red and blue darkened
    np.testing.assert_allclose(tile[post][:, 1], grey[post] * keep + add, atol=1.0)
    np.testing.assert_allclose(tile[post][:, 0], grey[post] * keep, atol=1.0)
    np.testing.assert_allclose(tile[post][:, 2], grey[post] * keep, atol=1.0)
    assert np.all(tile[pre][:, 0] > tile[pre][:, 1])
    assert np.all(tile[post][:, 1] > tile[post][:, 0])
    # segments in neither list are left grey
    np.testing.assert_array_equal(tile[other], plain[other])
    # without a segmentation, nothing is tinted
    bare = cleft_thumbnail(image, clefts, None, CLEFT, BOX, [PRE], [POST], size=48)
    np.testing.assert_array_equal(bare, plain.astype(np.uint8))


def test_contrast_is_stretched_from_the_1st_to_99th_percentile() -> None:
    image, _, clefts = _volumes()
    rng = np.random.default_rng(1)
    dull = rng.integers(100, 111, size=image.shape).astype(np.uint8)
    dull[2, 40, 20] = 255  # one outlier does not flatten the rest
    tile = cleft_thumbnail(dull, clefts, None, CLEFT, BOX, size=48)
    grey = tile[..., 0][~_is_yellow(tile)]
    assert grey.min() == 0
    assert grey.max() == 255
    assert np.percentile(grey, 90) - np.percentile(grey, 10) > 150


def test_section_with_most_cleft_voxels_is_shown() -> None:
    image, seg, clefts = _volumes()
    clefts[1, 38:40, 38:40] = CLEFT  # a small patch on section 1, the box's middle
    clefts[0, 38:40, 38:40] = CLEFT
    tile = cleft_thumbnail(image, clefts, seg, CLEFT, (0, 34, 36, 3, 46, 44), size=48)
    expected = _ring(clefts[2, 16:64, 16:64] == CLEFT)
    np.testing.assert_array_equal(_is_yellow(tile), expected)
    # the EM is that section's too
    other = cleft_thumbnail(image, clefts, None, CLEFT, (0, 34, 36, 3, 46, 44), size=48)
    alone = cleft_thumbnail(image[2:3], clefts[2:3], None, CLEFT, (0, 34, 36, 1, 46, 44), size=48)
    np.testing.assert_array_equal(other, alone)


@pytest.mark.parametrize("corner", ["low", "high"])
def test_border_crop_is_padded_and_the_cleft_stays_centred(corner: str) -> None:
    image, seg, clefts = _volumes((3, 60, 60))
    clefts[:] = 0
    if corner == "low":
        clefts[1, 0:6, 0:6] = CLEFT
        box = (1, 0, 0, 2, 6, 6)
    else:
        clefts[1, 54:60, 54:60] = CLEFT
        box = (1, 54, 54, 2, 60, 60)
    tile = cleft_thumbnail(image, clefts, seg, CLEFT, box, [PRE], [POST], size=48)
    assert tile.shape == (48, 48, 3)
    rows, cols = np.nonzero(_is_yellow(tile))
    assert abs((rows.min() + rows.max()) / 2 - 23.5) <= 0.5
    assert abs((cols.min() + cols.max()) / 2 - 23.5) <= 0.5
    # 48-voxel crop centred on the 6-voxel box: 21 voxels fall outside the volume
    pad = slice(0, 21) if corner == "low" else slice(27, 48)
    inside = slice(21, 48) if corner == "low" else slice(0, 27)
    assert not tile[pad, :].any() and not tile[:, pad].any()
    assert tile[inside, inside].any(axis=-1).mean() > 0.9


def test_deterministic() -> None:
    image, seg, clefts = _volumes()
    a = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, [PRE], [POST])
    b = cleft_thumbnail(image.copy(), clefts.copy(), seg.copy(), CLEFT, BOX, [PRE], [POST])
    np.testing.assert_array_equal(a, b)


class _Recorder:
    """An array that records the boxes read from it (like a zarr or dask array)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[int] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        out = np.asarray(self.data[key])
        self.reads.append(out.size)
        return out

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole volume was read")


def test_reads_only_the_crop_and_the_box_and_accepts_dask() -> None:
    import dask.array as da

    image, seg, clefts = _volumes((8, 200, 200))
    expected = cleft_thumbnail(image, clefts, seg, CLEFT, BOX, [PRE], [POST])
    wrapped = [_Recorder(v) for v in (image, seg, clefts)]
    tile = cleft_thumbnail(wrapped[0], wrapped[2], wrapped[1], CLEFT, BOX, [PRE], [POST])
    np.testing.assert_array_equal(tile, expected)
    for recorder in wrapped:
        assert recorder.reads and max(recorder.reads) <= 48 * 48
    lazy = [da.from_array(v, chunks=(2, 50, 50)) for v in (image, seg, clefts)]
    tile = cleft_thumbnail(lazy[0], lazy[2], lazy[1], CLEFT, BOX, [PRE], [POST])
    np.testing.assert_array_equal(tile, expected)


def test_cleft_without_voxels_in_its_box_raises() -> None:
    image, seg, clefts = _volumes()
    with pytest.raises(AvanInputError, match=r"cleft 7 has no voxel inside its box"):
        cleft_thumbnail(image, clefts, seg, CLEFT, (0, 0, 0, 2, 10, 10))
    with pytest.raises(AvanInputError, match=r"cleft 99 has no voxel"):
        cleft_thumbnail(image, clefts, seg, 99, BOX)
    with pytest.raises(AvanInputError, match=r"no voxel"):  # a box outside the volume
        cleft_thumbnail(image, clefts, seg, CLEFT, (9, 0, 0, 12, 10, 10))


def test_bad_inputs_raise() -> None:
    image, seg, clefts = _volumes()
    with pytest.raises(AvanInputError, match=r"has 4 entries"):
        cleft_thumbnail(image, clefts, seg, CLEFT, (2, 34, 36, 3))
    with pytest.raises(AvanInputError, match="empty"):
        cleft_thumbnail(image, clefts, seg, CLEFT, (2, 34, 36, 2, 46, 44))
    with pytest.raises(AvanInputError, match="image shape"):
        cleft_thumbnail(image[:3], clefts, seg, CLEFT, BOX)
    with pytest.raises(AvanInputError, match="size"):
        cleft_thumbnail(image, clefts, seg, CLEFT, BOX, size=0)

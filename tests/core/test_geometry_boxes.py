"""Boxes without a viewer: the visible region, boxes around a cleft, crops and their
table rows.

``viewport_box``, ``cleft_box``, ``grow_box``, ``clefts_in_box`` and
``inscribed_ellipsoid`` are compared with slow references: a voxel-by-voxel visibility
test, ``np.argwhere`` on the whole volume, a dilated mask, ``np.unique`` and a
voxel-by-voxel ellipsoid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_avan.core.geometry import (
    box_offset,
    cleft_box,
    clefts_in_box,
    clip_range,
    grow_box,
    inscribed_ellipsoid,
    shift_points,
    union_box,
    viewport_box,
)
from napari_avan.core.tables import EDGE_COLUMNS
from napari_avan.types import AvanInputError

COORDINATE_COLUMNS = [
    f"{prefix}{axis}"
    for prefix in ("presyn_", "postsyn_", "centroid_", "bbox_b", "bbox_e")
    for axis in "zyx"
]
ID_COLUMNS = ["cleft_segid", "presyn_segid", "postsyn_segid"]

# --------------------------------------------------------------------------- viewport_box


def _visible_voxels(centre: float, half: float, scale: float, translate: float, n: int) -> slice:
    """Voxels along one axis whose extent overlaps the visible world interval.

    napari puts voxel ``i`` at world ``translate + i * scale``; it covers half a voxel on
    each side. A voxel counts as visible when its extent overlaps the open interval
    ``(centre - half, centre + half)``.
    """
    lo_world, hi_world = centre - half, centre + half
    visible = [
        i
        for i in range(n)
        if translate + (i + 0.5) * scale > lo_world and translate + (i - 0.5) * scale < hi_world
    ]
    if not visible:
        return slice(0, 0)
    assert visible == list(range(visible[0], visible[-1] + 1))
    return slice(visible[0], visible[-1] + 1)


def _sections(index: int, depth: int, n: int) -> slice:
    """``depth`` sections with ``index`` the ((depth - 1) // 2)-th, clipped to the volume."""
    wanted = [index - max(0, depth - 1) // 2 + k for k in range(max(1, depth))]
    kept = [k for k in wanted if 0 <= k < n]
    return slice(kept[0], kept[-1] + 1)


def _same_extent(a: slice, b: slice) -> bool:
    """Two slices select the same voxels (empty slices are equal whatever their start)."""
    if a.stop <= a.start and b.stop <= b.start:
        return True
    return (a.start, a.stop) == (b.start, b.stop)


def test_viewport_box_2d_matches_a_hand_computed_box() -> None:
    # shape (20, 100, 200), scale (40, 4, 4) nm, translate (0, 10, -20) nm.
    # Camera centre (y, x) = (200, 300) nm, zoom 2 px/nm, canvas 100 x 160 px:
    # half the view is 100 / 2 / 2 = 25 nm in y and 160 / 2 / 2 = 40 nm in x.
    # y: world 175..225 -> data (175 - 10) / 4 = 41.25 .. (225 - 10) / 4 = 53.75;
    #    voxel 41 spans 40.5..41.5 and voxel 54 spans 53.5..54.5, so 41..54 -> slice(41, 55).
    # x: world 260..340 -> data (260 + 20) / 4 = 70 .. (340 + 20) / 4 = 90;
    #    voxel 69 ends at 69.5 (outside), voxel 90 starts at 89.5 (inside) -> slice(70, 91).
    # z: point 200 nm -> section 200 / 40 = 5 -> slice(5, 6).
    box = viewport_box(
        (20, 100, 200),
        (40.0, 4.0, 4.0),
        (0.0, 10.0, -20.0),
        center_world=(0.0, 200.0, 300.0),
        zoom=2.0,
        canvas_hw=(100, 160),
        displayed=(1, 2),
        point_world=(200.0, 0.0, 0.0),
    )
    assert box == (slice(5, 6), slice(41, 55), slice(70, 91))


def test_viewport_box_accepts_a_two_value_centre() -> None:
    kwargs: dict[str, Any] = {
        "zoom": 2.0,
        "canvas_hw": (100, 160),
        "displayed": (1, 2),
        "point_world": (200.0, 0.0, 0.0),
    }
    three = viewport_box(
        (20, 100, 200), (40, 4, 4), (0, 10, -20), center_world=(7, 200, 300), **kwargs
    )
    two = viewport_box((20, 100, 200), (40, 4, 4), (0, 10, -20), center_world=(200, 300), **kwargs)
    assert three == two == (slice(5, 6), slice(41, 55), slice(70, 91))


def test_viewport_box_is_clipped_at_the_volume_borders() -> None:
    # zoomed far out: the whole plane is visible, and no slice leaves the volume
    far = viewport_box(
        (10, 30, 40),
        (40, 4, 4),
        (0, 0, 0),
        center_world=(0, 60, 80),
        zoom=0.01,
        canvas_hw=(500, 500),
        displayed=(1, 2),
        point_world=(80, 0, 0),
    )
    assert far == (slice(2, 3), slice(0, 30), slice(0, 40))
    # centred on the top-left corner: the box starts at 0 and reaches half the view
    corner = viewport_box(
        (10, 30, 40),
        (40, 4, 4),
        (0, 0, 0),
        center_world=(0, 0, 0),
        zoom=1.0,
        canvas_hw=(40, 40),  # 20 nm = 5 voxels each side
        displayed=(1, 2),
        point_world=(0, 0, 0),
    )
    assert corner == (slice(0, 1), slice(0, 6), slice(0, 6))
    # entirely outside the volume: empty slices, never negative or past the end
    outside = viewport_box(
        (10, 30, 40),
        (40, 4, 4),
        (0, 0, 0),
        center_world=(0, -1000, 5000),
        zoom=1.0,
        canvas_hw=(40, 40),
        displayed=(1, 2),
        point_world=(10_000, 0, 0),  # beyond the last section: clipped to it
    )
    assert outside[0] == slice(9, 10)
    for s, n in zip(outside[1:], (30, 40), strict=True):
        assert 0 <= s.start <= s.stop <= n
        assert s.stop == s.start


@pytest.mark.parametrize("seed", range(40))
def test_viewport_box_matches_a_voxel_by_voxel_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(3, 60, size=3))
    scale = tuple(float(s) for s in rng.uniform(0.5, 50, size=3))
    translate = tuple(float(t) for t in rng.uniform(-100, 100, size=3))
    displayed = [(1, 2), (0, 2), (0, 1), (2, 0), (2, 1)][seed % 5]
    hidden = ({0, 1, 2} - set(displayed)).pop()
    extent = [translate[a] + shape[a] * scale[a] for a in range(3)]
    centre = [float(rng.uniform(translate[a] - 50, extent[a] + 50)) for a in displayed]
    zoom = float(rng.uniform(0.02, 3))
    canvas = (int(rng.integers(20, 400)), int(rng.integers(20, 400)))
    point = [0.0, 0.0, 0.0]
    # a point between section centres (no rounding ties), possibly outside the volume
    point[hidden] = (
        translate[hidden] + (int(rng.integers(-3, shape[hidden] + 3)) + 0.3) * scale[hidden]
    )
    depth = int(rng.integers(1, 6))
    box = viewport_box(
        shape,
        scale,
        translate,
        center_world=(0.0, *centre),
        zoom=zoom,
        canvas_hw=canvas,
        displayed=displayed,
        point_world=point,
        depth=depth,
    )
    for k, axis in enumerate(displayed):
        half = canvas[k] / 2 / zoom
        expected = _visible_voxels(centre[k], half, scale[axis], translate[axis], shape[axis])
        got = box[axis]
        assert 0 <= got.start <= got.stop <= shape[axis]
        assert _same_extent(got, expected), (axis, got, expected)
    index = min(
        max(math.floor((point[hidden] - translate[hidden]) / scale[hidden] + 0.5), 0),
        shape[hidden] - 1,
    )
    assert box[hidden] == _sections(index, depth, shape[hidden])


@pytest.mark.parametrize(
    ("z", "depth", "expected"),
    [
        (5, 1, slice(5, 6)),
        (5, 2, slice(5, 7)),  # even: the current section and the one after
        (5, 3, slice(4, 7)),
        (5, 4, slice(4, 8)),
        (5, 5, slice(3, 8)),
        (5, 0, slice(5, 6)),  # no depth still shows the current section
        (0, 1, slice(0, 1)),
        (0, 3, slice(0, 2)),  # clipped at the first section, not shifted
        (0, 4, slice(0, 3)),
        (0, 5, slice(0, 3)),
        (9, 1, slice(9, 10)),
        (9, 2, slice(9, 10)),  # clipped at the last section
        (9, 3, slice(8, 10)),
        (9, 5, slice(7, 10)),
    ],
)
def test_viewport_box_depth_sections(z: int, depth: int, expected: slice) -> None:
    box = viewport_box(
        (10, 30, 40),
        (40, 4, 4),
        (0, 0, 0),
        center_world=(0, 60, 80),
        zoom=0.01,
        canvas_hw=(500, 500),
        displayed=(1, 2),
        point_world=(z * 40.0, 0, 0),
        depth=depth,
    )
    assert box[0] == expected
    assert box[1:] == (slice(0, 30), slice(0, 40))


def test_viewport_box_3d_view_is_the_whole_volume() -> None:
    box = viewport_box(
        (7, 30, 40),
        (40, 4, 4),
        (100, -3, 5),
        center_world=(50, 1, 2),
        zoom=5.0,
        canvas_hw=(10, 10),
        displayed=(0, 1, 2),
        point_world=(0, 0, 0),
        depth=3,
    )
    assert box == (slice(0, 7), slice(0, 30), slice(0, 40))


def test_viewport_box_rolled_view_uses_the_displayed_axes() -> None:
    # displayed (z, x), y hidden. Centre (z, x) = (200, 80) nm, zoom 1, canvas 80 x 40 px:
    # z: world 160..240 -> data 4..6 -> voxels 4, 5, 6 (voxel 6 starts at 5.5) -> slice(4, 7)
    #    (voxel 3 ends at 3.5 < 4)
    # x: world 60..100 -> data 15..25 -> slice(15, 26)
    # y: point 41 nm -> 10.25 -> section 10; depth 1 -> slice(10, 11)
    box = viewport_box(
        (10, 30, 40),
        (40, 4, 4),
        (0, 0, 0),
        center_world=(0, 200, 80),
        zoom=1.0,
        canvas_hw=(80, 40),
        displayed=(0, 2),
        point_world=(0, 41.0, 0),
    )
    assert box == (slice(4, 7), slice(10, 11), slice(15, 26))


@pytest.mark.parametrize("zoom", [0.0, -1.0])
def test_viewport_box_rejects_a_non_positive_zoom(zoom: float) -> None:
    with pytest.raises(AvanInputError, match="zoom"):
        viewport_box(
            (10, 30, 40),
            (40, 4, 4),
            (0, 0, 0),
            center_world=(0, 60, 80),
            zoom=zoom,
            canvas_hw=(100, 100),
            displayed=(1, 2),
            point_world=(0, 0, 0),
        )


# ------------------------------------------------------------------------------ cleft_box


class _Recording:
    """A read-only array that records every index it is read with."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[Any] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        self.reads.append(key)
        return self.data[key]

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole volume was read")


def _walk(
    rng: np.random.Generator, shape: tuple[int, ...], start: np.ndarray, steps: int
) -> np.ndarray:
    """Voxels of a 26-connected random walk clipped to the volume (a connected cleft)."""
    here = np.array(start)
    path = [here.copy()]
    for _ in range(steps):
        here = np.clip(here + rng.integers(-1, 2, size=3), 0, np.array(shape) - 1)
        path.append(here.copy())
    return np.array(path)


def _reference_box(labels: np.ndarray, cleft_id: int) -> tuple[slice, slice, slice]:
    hits = np.argwhere(labels == cleft_id)
    lo, hi = hits.min(axis=0), hits.max(axis=0) + 1
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def _random_labels(seed: int, shape: tuple[int, int, int], steps: int) -> np.ndarray:
    """Three connected clefts (ids 3, 7, 11) as random walks, the later overwriting."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint32)
    for cid in (3, 7, 11):
        start = np.array([rng.integers(0, n) for n in shape])
        walk = _walk(rng, shape, start, steps)
        labels[tuple(walk.T)] = cid
    return labels


def _connected(labels: np.ndarray, cleft_id: int) -> bool:
    from scipy import ndimage

    _, n = ndimage.label(labels == cleft_id, structure=np.ones((3, 3, 3)))
    return n == 1


@pytest.mark.parametrize(
    ("seed", "shape", "steps", "start_half"),
    [
        (0, (12, 60, 70), 100, 64),  # the window covers the volume at once
        (1, (20, 300, 280), 400, 64),
        (2, (40, 200, 200), 3000, 8),  # clefts much larger than the first window
        (3, (9, 400, 50), 2000, 4),
        (4, (30, 150, 300), 800, 16),
        (5, (5, 5, 5), 50, 2),  # touches every border
    ],
)
def test_cleft_box_matches_argwhere(
    seed: int, shape: tuple[int, int, int], steps: int, start_half: int
) -> None:
    labels = _random_labels(seed, shape, steps)
    rng = np.random.default_rng(100 + seed)
    checked = 0
    for cid in (3, 7, 11):
        if not _connected(labels, cid):  # an overwritten walk may be cut in two
            continue
        voxels = np.argwhere(labels == cid)
        expected = _reference_box(labels, cid)
        for point in voxels[rng.choice(len(voxels), size=min(3, len(voxels)), replace=False)]:
            got = cleft_box(labels, cid, tuple(int(p) for p in point), start_half=start_half)
            assert got == expected
            checked += 1
    assert checked >= 3


def test_cleft_box_grows_past_the_first_window_and_touches_the_borders() -> None:
    shape = (16, 120, 120)
    labels = np.zeros(shape, dtype=np.uint32)
    labels[0:16, 5, 0:120] = 4  # a sheet from border to border along z and x
    labels[3, 5:119, 60] = 4  # and a bar along y to one short of the end
    expected = (slice(0, 16), slice(5, 119), slice(0, 120))
    assert _reference_box(labels, 4) == expected
    array = _Recording(labels)
    assert cleft_box(array, 4, (3, 60, 60), start_half=4) == expected
    assert len(array.reads) > 1  # the window had to grow


def test_cleft_box_reads_only_a_window_for_a_small_cleft() -> None:
    shape = (40, 400, 400)
    labels = np.zeros(shape, dtype=np.uint32)
    labels[20:23, 200:210, 190:230] = 9
    labels[0, 0, 0] = 9  # a far, separate piece is not looked for
    array = _Recording(labels)
    box = cleft_box(array, 9, (21, 205, 200))
    assert box == (slice(20, 23), slice(200, 210), slice(190, 230))
    assert len(array.reads) == 1
    (window,) = array.reads
    assert len(window) == 3 and all(isinstance(s, slice) for s in window)
    size = np.prod([s.stop - s.start for s in window])
    assert size < labels.size / 10


def test_cleft_box_without_a_cleft_voxel_nearby_raises() -> None:
    labels = np.zeros((16, 300, 300), dtype=np.uint32)
    labels[8, 290:295, 290:295] = 5
    labels[8, 10, 10] = 6
    with pytest.raises(AvanInputError, match="cleft 5 has no voxel"):
        cleft_box(labels, 5, (8, 10, 10))
    with pytest.raises(AvanInputError, match="cleft 12 has no voxel"):
        cleft_box(labels, 12, (8, 290, 290))


# ------------------------------------------------------- grow_box, union_box, box_offset


@pytest.mark.parametrize("seed", range(20))
def test_grow_box_matches_a_mask_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 20, size=3))
    starts = [int(rng.integers(0, n)) for n in shape]
    box = tuple(
        slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(starts, shape, strict=True)
    )
    margin = [int(m) for m in rng.integers(0, 12, size=3)]
    # reference: dilate a mask of the box by a cuboid of the margin and take its bbox
    mask = np.zeros(shape, dtype=bool)
    mask[box] = True
    grown = np.zeros_like(mask)
    for z, y, x in np.argwhere(mask):
        grown[
            max(0, z - margin[0]) : z + margin[0] + 1,
            max(0, y - margin[1]) : y + margin[1] + 1,
            max(0, x - margin[2]) : x + margin[2] + 1,
        ] = True
    assert grow_box(box, margin, shape) == _reference_box(grown.astype(np.uint8), 1)


def test_grow_box_with_no_margin_is_the_box_and_shapes_must_match() -> None:
    box = (slice(1, 2), slice(3, 5), slice(0, 9))
    assert grow_box(box, (0, 0, 0), (4, 6, 9)) == box
    with pytest.raises(ValueError):
        grow_box(box, (1, 1), (4, 6, 9))


def test_box_offset_is_the_first_corner() -> None:
    offset = box_offset((slice(3, 7), slice(0, 1), slice(12, 40)))
    assert offset.dtype == np.int64
    assert offset.tolist() == [3, 0, 12]
    volume = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    box = (slice(2, 4), slice(1, 6), slice(3, 5))
    # the offset maps a voxel of the crop back to the volume
    assert volume[tuple(box_offset(box) + np.array([1, 2, 0]))] == volume[box][1, 2, 0]


def test_union_box_holds_every_box_and_no_more() -> None:
    a = (slice(2, 5), slice(0, 3), slice(7, 9))
    b = (slice(4, 6), slice(1, 8), slice(0, 1))
    assert union_box([a]) == a
    assert union_box([a, b]) == (slice(2, 6), slice(0, 8), slice(0, 9))
    assert union_box(iter([b, a])) == union_box([a, b])  # any iterable, any order
    rng = np.random.default_rng(0)
    shape = (9, 12, 15)
    for _ in range(20):
        boxes: list[tuple[slice, slice, slice]] = []
        for _ in range(int(rng.integers(1, 5))):
            starts = [int(rng.integers(0, n)) for n in shape]
            stops = [int(rng.integers(s + 1, n + 1)) for s, n in zip(starts, shape, strict=True)]
            boxes.append(
                (slice(starts[0], stops[0]), slice(starts[1], stops[1]), slice(starts[2], stops[2]))
            )
        mask = np.zeros(shape, dtype=np.uint8)
        for box in boxes:
            mask[box] = 1
        assert union_box(boxes) == _reference_box(mask, 1)


@pytest.mark.parametrize(
    ("begin", "end", "size", "expected"),
    [
        (2.0, 5.0, 10, slice(2, 5)),
        (1.5, 4.2, 10, slice(1, 5)),  # floor of the start, ceil of the end
        (-3.0, 4.0, 10, slice(0, 4)),
        (8.0, 30.0, 10, slice(8, 10)),
        (12.0, 30.0, 10, slice(10, 10)),  # past the end: empty, not reversed
        (-9.0, -2.0, 10, slice(0, 0)),
        (6.0, 3.0, 10, slice(6, 6)),
    ],
)
def test_clip_range(begin: float, end: float, size: int, expected: slice) -> None:
    assert clip_range(begin, end, size) == expected


# ----------------------------------------------------------------------------- shift_points


def _random_edges(rng: np.random.Generator, n: int) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for column in EDGE_COLUMNS:
        if column in ("status", "model", "updated"):
            data[column] = [f"{column}{i}" for i in range(n)]
        elif column.endswith("_wt") or column.startswith("centroid_"):
            data[column] = rng.uniform(0, 100, size=n)
        else:
            data[column] = rng.integers(0, 1000, size=n)
    return pd.DataFrame(data)


def test_coordinate_columns_are_edge_columns() -> None:
    assert set(COORDINATE_COLUMNS) <= set(EDGE_COLUMNS)
    assert len(COORDINATE_COLUMNS) == 15


def test_shift_points_moves_exactly_the_coordinate_columns() -> None:
    rng = np.random.default_rng(0)
    edges = _random_edges(rng, 7)
    before = edges.copy()
    offset = (3, 40, 500)
    shifted = shift_points(edges, offset)
    pd.testing.assert_frame_equal(edges, before)  # the input is left alone
    assert list(shifted.columns) == list(edges.columns)
    assert len(shifted) == len(edges)
    delta = dict(zip("zyx", offset, strict=True))
    for column in EDGE_COLUMNS:
        if column in COORDINATE_COLUMNS:
            expected = edges[column] + delta[column[-1]]
            np.testing.assert_array_equal(shifted[column].to_numpy(), expected.to_numpy())
        else:
            pd.testing.assert_series_equal(shifted[column], edges[column])
    for column in [*ID_COLUMNS, "presyn_wt", "postsyn_wt", "presyn_sz", "postsyn_sz", "size"]:
        pd.testing.assert_series_equal(shifted[column], edges[column])


def test_shift_points_by_zero_and_back() -> None:
    edges = _random_edges(np.random.default_rng(1), 4)
    pd.testing.assert_frame_equal(shift_points(edges, (0, 0, 0)), edges)
    there = shift_points(edges, (-5, 11, 2))
    pd.testing.assert_frame_equal(shift_points(there, (5, -11, -2)), edges)


def test_shift_points_skips_missing_columns_and_keeps_extra_ones() -> None:
    edges = pd.DataFrame(
        {
            "cleft_segid": [1, 2],
            "centroid_x": [1.5, 2.5],
            "presyn_wt": [0.1, 0.2],
            "note": ["a", "b"],
        }
    )
    shifted = shift_points(edges, (10, 20, 30))
    assert shifted["centroid_x"].tolist() == [31.5, 32.5]
    assert shifted["cleft_segid"].tolist() == [1, 2]
    assert shifted["presyn_wt"].tolist() == [0.1, 0.2]
    assert shifted["note"].tolist() == ["a", "b"]
    assert list(shifted.columns) == list(edges.columns)


# ---------------------------------------------------------------------------- clefts_in_box


def _random_box(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    starts = [int(rng.integers(0, n)) for n in shape]
    stops = [int(rng.integers(a + 1, n + 1)) for a, n in zip(starts, shape, strict=True)]
    return (slice(starts[0], stops[0]), slice(starts[1], stops[1]), slice(starts[2], stops[2]))


@pytest.mark.parametrize("seed", range(25))
def test_clefts_in_box_matches_unique(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(2, 40, size=3))
    # sparse labels with large ids, so that some clefts fall outside a box
    labels = np.zeros(shape, dtype=np.uint64)
    spots = rng.random(shape) < 0.02
    labels[spots] = rng.choice([1, 5, 9, 2**40 + 3, 77], size=int(spots.sum()))
    box = _random_box(rng, shape)
    points = clefts_in_box(labels, box)
    view = labels[box]
    expected = set(np.unique(view).tolist()) - {0}
    assert set(points) == expected
    for cid, point in points.items():
        assert isinstance(cid, int)
        assert len(point) == 3 and all(isinstance(p, int) for p in point)
        assert all(s.start <= p < s.stop for p, s in zip(point, box, strict=True))
        assert labels[point] == cid


def test_clefts_in_box_of_an_empty_box_or_background() -> None:
    labels = np.zeros((4, 5, 6), dtype=np.uint32)
    assert clefts_in_box(labels, (slice(0, 4), slice(0, 5), slice(0, 6))) == {}
    labels[3, 4, 5] = 8
    assert clefts_in_box(labels, (slice(0, 3), slice(0, 5), slice(0, 6))) == {}
    assert clefts_in_box(labels, (slice(2, 4), slice(4, 5), slice(0, 6))) == {8: (3, 4, 5)}


# ---------------------------------------------------------------------- inscribed_ellipsoid


def _inscribed_reference(shape: tuple[int, ...]) -> np.ndarray:
    """Voxel by voxel: is the voxel centre inside the ellipsoid touching the box's faces?"""
    out = np.zeros(shape, dtype=bool)
    centre = np.array(shape, float) / 2
    for index in np.ndindex(*shape):
        offset = (np.array(index, float) + 0.5 - centre) / centre
        out[index] = float((offset**2).sum()) <= 1.0
    return out


def test_inscribed_ellipsoid_matches_a_voxel_by_voxel_reference() -> None:
    for shape in [(1, 1, 1), (3, 8, 9), (8, 96, 96), (2, 17, 40)]:
        got = inscribed_ellipsoid(shape)
        np.testing.assert_array_equal(got, _inscribed_reference(shape))
        assert got[tuple(n // 2 for n in shape)]  # the centre is always inside

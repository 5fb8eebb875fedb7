"""AVAN on boxes around clefts (the Partners widget's work, without a viewer): crops give
the whole-volume answer.

``iter_partners`` reads a box around the clefts and assigns them there; its partners,
edge rows and masks are compared with ``iter_assign`` and ``edge_table`` run on the
whole volume.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_avan.core.geometry import clefts_in_box, inscribed_ellipsoid
from napari_avan.models.partners import CleftOutput, PartnersStep, iter_partners

COORDINATE_COLUMNS = [
    f"{prefix}{axis}"
    for prefix in ("presyn_", "postsyn_", "centroid_", "bbox_b", "bbox_e")
    for axis in "zyx"
]
ID_COLUMNS = ["cleft_segid", "presyn_segid", "postsyn_segid"]


def test_importing_models_partners_loads_no_torch() -> None:
    """The Partners widget imports this module when it opens; torch waits for a run."""
    code = (
        "import sys\n"
        "import napari_avan.models.partners\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'napari')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- iter_partners


class _Recording:
    """An array wrapper that records what is read and refuses to be read whole."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = tuple(data.shape)
        self.dtype = data.dtype
        self.ndim = len(self.shape)
        self.reads: list[Any] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        self.reads.append(key)
        return np.asarray(self.data[key])

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole volume was read")


@pytest.fixture(scope="module")
def avan() -> tuple[Any, Any]:
    """The bundled AVAN prepared for the CPU, with its run plan (as the widget gets it)."""
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan

    model = resolve_model("avan", "avan")
    run = plan("cpu")
    return replace(model, network=run.prepare(model.network)), run


@pytest.fixture(scope="module", params=[(16, 128, 128), (16, 256, 256)], ids=["128", "256"])
def sample(request: pytest.FixtureRequest) -> Any:
    """The synthetic polyadic volume of the brief, and a wider one whose crops are
    smaller than the volume in y and x too."""
    from napari_avan.core.synth import synthesize

    return synthesize(seed=3, shape=request.param, polyadic=True)


ASSIGN_KWARGS = [
    {"polyadic": True, "pre_threshold": 0.6, "post_threshold": 0.4},
    {"polyadic": False},
]


_REFERENCES: dict[tuple[tuple[int, ...], str], SimpleNamespace] = {}


def _whole_volume(model: Any, run: Any, sample: Any, kwargs: dict[str, Any]) -> SimpleNamespace:
    """The reference: iter_assign and edge_table on the whole volume (computed once)."""
    key = (tuple(sample.clefts.shape), repr(sorted(kwargs.items())))
    if key not in _REFERENCES:
        _REFERENCES[key] = _compute_whole_volume(model, run, sample, kwargs)
    return _REFERENCES[key]


def _compute_whole_volume(
    model: Any, run: Any, sample: Any, kwargs: dict[str, Any]
) -> SimpleNamespace:
    from napari_avan.core.tables import edge_table
    from napari_avan.models.assign import edge_weights, iter_assign

    steps = list(
        iter_assign(
            model,
            sample.image,
            sample.clefts,
            sample.segmentation,
            sample.voxel_size_nm,
            run=run,
            **kwargs,
        )
    )
    assignments = {a.cleft_id: a for step in steps for a in step.finished}
    weights = edge_weights(list(assignments.values()))
    edges = edge_table(
        sample.clefts,
        sample.segmentation,
        weights[["cleft_id", "pre_id", "post_id"]],
        voxel_size_nm=sample.voxel_size_nm,
        weights=weights,
        model="avan",
    )
    return SimpleNamespace(assignments=assignments, edges=edges, total=steps[-1].total)


def _run(
    model: Any, run: Any, arrays: tuple[Any, Any, Any], sample: Any, points: Any, **kwargs: Any
) -> tuple[list[PartnersStep], dict[int, CleftOutput]]:
    steps = list(
        iter_partners(model, run, arrays, sample.voxel_size_nm, points, model_name="avan", **kwargs)
    )
    outputs: dict[int, CleftOutput] = {}
    for step in steps:
        for out in step.outputs:
            assert out.cleft_id not in outputs  # each cleft is finished once
            outputs[out.cleft_id] = out
    return steps, outputs


def _by_edge(edges: pd.DataFrame) -> pd.DataFrame:
    return edges.set_index(ID_COLUMNS).sort_index()


def _check_against_whole_volume(
    sample: Any, outputs: dict[int, CleftOutput], reference: SimpleNamespace
) -> None:
    assert set(outputs) == set(reference.assignments)
    for cid, out in outputs.items():
        want = reference.assignments[cid]
        got = out.assignment
        assert got.cleft_id == cid
        assert got.pre_ids == want.pre_ids
        assert got.post_ids == want.post_ids
        assert got.pre_ids and got.post_ids
        np.testing.assert_array_equal(got.candidates, want.candidates)
        np.testing.assert_allclose(got.pre_scores, want.pre_scores, atol=1e-5)
        np.testing.assert_allclose(got.post_scores, want.post_scores, atol=1e-5)

        # the region holds the whole cleft and lies in the volume
        region = out.region
        assert all(
            0 <= s.start < s.stop <= n for s, n in zip(region, sample.clefts.shape, strict=True)
        )
        inside = np.zeros(sample.clefts.shape, dtype=bool)
        inside[region] = True
        assert inside[sample.clefts == cid].all()

        # masks: exactly the partners' voxels in the ellipsoid inscribed in the region
        seg = sample.segmentation[region]
        near = inscribed_ellipsoid(seg.shape)  # checked voxel by voxel in tests/core
        for mask, ids in ((out.pre_mask, want.pre_ids), (out.post_mask, want.post_ids)):
            assert mask.shape == seg.shape
            np.testing.assert_array_equal(mask, np.where(near & np.isin(seg, ids), seg, 0))
            assert set(np.unique(mask).tolist()) - {0} <= set(ids)

        # edges: the whole-volume rows of this cleft, in volume coordinates
        mine = _by_edge(out.edges)
        theirs = _by_edge(reference.edges[reference.edges["cleft_segid"] == cid])
        assert list(mine.index) == list(theirs.index)
        assert len(mine) == len(want.edges)
        for column in ["centroid_z", "centroid_y", "centroid_x", "presyn_wt", "postsyn_wt"]:
            np.testing.assert_allclose(
                mine[column].to_numpy(float), theirs[column].to_numpy(float), atol=1e-5
            )
        for column in [*COORDINATE_COLUMNS, "presyn_sz", "postsyn_sz", "size"]:
            if column.startswith("centroid_"):
                continue
            np.testing.assert_array_equal(mine[column].to_numpy(), theirs[column].to_numpy())
        assert (mine["model"] == "avan").all()


@pytest.mark.parametrize("kwargs", ASSIGN_KWARGS, ids=["polyadic", "dyadic"])
def test_iter_partners_matches_the_whole_volume(
    avan: tuple[Any, Any], sample: Any, kwargs: dict[str, Any]
) -> None:
    model, run = avan
    reference = _whole_volume(model, run, sample, kwargs)
    whole = tuple(slice(0, n) for n in sample.clefts.shape)
    points = clefts_in_box(sample.clefts, whole)
    assert len(points) >= 2
    arrays = (sample.image, sample.clefts, sample.segmentation)
    steps, outputs = _run(model, run, arrays, sample, points, batch_size=1, **kwargs)
    # progress: one step per patch, counting up to the whole-volume total
    assert [s.total for s in steps] == [reference.total] * len(steps)
    assert [s.done for s in steps] == list(range(1, reference.total + 1))
    _check_against_whole_volume(sample, outputs, reference)


def test_iter_partners_any_voxel_of_a_cleft_will_do(avan: tuple[Any, Any], sample: Any) -> None:
    model, run = avan
    kwargs = ASSIGN_KWARGS[0]
    reference = _whole_volume(model, run, sample, kwargs)
    # the last voxel of each cleft in raster order instead of the first
    points = {
        int(cid): tuple(int(v) for v in np.argwhere(sample.clefts == cid)[-1])
        for cid in reference.assignments
    }
    arrays = (sample.image, sample.clefts, sample.segmentation)
    _, outputs = _run(model, run, arrays, sample, points, batch_size=4, **kwargs)
    _check_against_whole_volume(sample, outputs, reference)


def test_iter_partners_of_one_cleft(avan: tuple[Any, Any], sample: Any) -> None:
    model, run = avan
    kwargs = ASSIGN_KWARGS[0]
    reference = _whole_volume(model, run, sample, kwargs)
    cid = max(reference.assignments)
    point = tuple(int(v) for v in np.argwhere(sample.clefts == cid)[0])
    arrays = (sample.image, sample.clefts, sample.segmentation)
    steps, outputs = _run(model, run, arrays, sample, {cid: point}, **kwargs)
    assert set(outputs) == {cid}
    assert steps[-1].done == steps[-1].total
    only = SimpleNamespace(
        assignments={cid: reference.assignments[cid]}, edges=reference.edges, total=None
    )
    _check_against_whole_volume(sample, outputs, only)


def test_iter_partners_without_clefts_yields_one_empty_step(avan: tuple[Any, Any]) -> None:
    model, run = avan
    volume = np.zeros((8, 32, 32), dtype=np.uint8)
    arrays = (_Recording(volume), _Recording(volume), _Recording(volume))
    steps = list(iter_partners(model, run, arrays, (40.0, 4.0, 4.0), {}))
    assert len(steps) == 1
    assert (steps[0].done, steps[0].total, steps[0].outputs) == (0, 0, [])
    assert all(not a.reads for a in arrays)  # nothing was read


def _to_zarr(path: Path, name: str, data: np.ndarray) -> Any:
    import zarr

    array = zarr.open_array(
        str(path / f"{name}.zarr"), mode="w", shape=data.shape, chunks=(4, 64, 64), dtype=data.dtype
    )
    array[...] = data
    return zarr.open_array(str(path / f"{name}.zarr"), mode="r")


def test_iter_partners_reads_boxes_of_zarr_arrays(
    avan: tuple[Any, Any], sample: Any, tmp_path: Path
) -> None:
    import zarr

    model, run = avan
    kwargs = ASSIGN_KWARGS[0]
    reference = _whole_volume(model, run, sample, kwargs)
    stored = {
        name: _to_zarr(tmp_path, name, getattr(sample, name))
        for name in ("image", "clefts", "segmentation")
    }
    assert all(isinstance(a, zarr.Array) for a in stored.values())

    # every cleft, straight from zarr: the same answer as the whole volume in memory
    whole = tuple(slice(0, n) for n in sample.clefts.shape)
    points = clefts_in_box(stored["clefts"], whole)
    arrays = (stored["image"], stored["clefts"], stored["segmentation"])
    _, outputs = _run(model, run, arrays, sample, points, **kwargs)
    _check_against_whole_volume(sample, outputs, reference)

    # one cleft through a wrapper that records the reads: only boxes, smaller than the volume
    cid = min(reference.assignments)
    point = points[cid]
    recorded = tuple(_Recording(stored[name]) for name in ("image", "clefts", "segmentation"))
    _, one = _run(model, run, recorded, sample, {cid: point}, **kwargs)
    only = SimpleNamespace(
        assignments={cid: reference.assignments[cid]}, edges=reference.edges, total=None
    )
    _check_against_whole_volume(sample, one, only)
    for array in recorded:
        assert array.reads
        for key in array.reads:
            assert isinstance(key, tuple) and len(key) == 3
            assert all(isinstance(s, slice) and s.step is None for s in key)
    # the image and the segmentation are read once, as the box around the cleft (the
    # cleft labels also in the growing windows that find the cleft's bounding box)
    (image_box,) = recorded[0].reads
    (seg_box,) = recorded[2].reads
    assert image_box == seg_box == one[cid].region == recorded[1].reads[-1]
    box_size = np.prod([s.stop - s.start for s in image_box])
    assert box_size < np.prod(sample.clefts.shape)


@pytest.mark.parametrize(
    "x0",
    [
        122,  # even crop offset
        121,  # odd crop offsets: a centroid at .5 must still anchor the same voxel
        123,
    ],
)
def test_iter_partners_matches_the_whole_volume_for_a_centroid_at_a_half(
    avan: tuple[Any, Any], x0: int
) -> None:
    from napari_avan.models.assign import assign_cleft

    model, run = avan
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(16, 256, 256), dtype=np.uint8)
    segmentation = np.ones((16, 256, 256), dtype=np.uint32)
    segmentation[:, :, 126:] = 2
    clefts = np.zeros((16, 256, 256), dtype=np.uint32)
    # 10 voxels wide from x0: centroid x = x0 + 4.5; the crop starts at x0 - 96
    clefts[6:8, 120:130, x0 : x0 + 10] = 1
    voxel = (40.0, 4.0, 4.0)
    whole = assign_cleft(model, image, clefts, segmentation, voxel, 1, run=run)
    outputs = [
        out
        for step in iter_partners(
            model, run, (image, clefts, segmentation), voxel, {1: (6, 120, x0)}
        )
        for out in step.outputs
    ]
    (out,) = outputs
    assert out.region[2].start == x0 - 96
    np.testing.assert_array_equal(out.assignment.candidates, whole.candidates)
    np.testing.assert_allclose(out.assignment.pre_scores, whole.pre_scores, atol=1e-5)
    np.testing.assert_allclose(out.assignment.post_scores, whole.post_scores, atol=1e-5)

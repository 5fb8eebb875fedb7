"""Bulk detection equals the whole-volume path, whatever the blocks, and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bulk_cases import WORKING_NM, assert_same_outputs, noise_image, whole_volume

from napari_avan.bulk import iter_bulk_detect, plan_job
from napari_avan.bulk.grid import OutputGrid
from napari_avan.io import write_volume
from napari_avan.types import AvanInputError


def _bulk(detector: Path, spec: str, out: Path, **kwargs):
    run_kw = {
        k: kwargs.pop(k) for k in ("workers", "scheduler", "resume", "overwrite") if k in kwargs
    }
    job = plan_job(spec, out, model=str(detector), device="cpu", **kwargs)
    result = None
    for step in iter_bulk_detect(job, **run_kw):
        result = step.result
    return job, result


def _crossing(clefts: np.ndarray, block: tuple[int, int, int]) -> int:
    """Clefts lying in more than one block of ``block``."""
    ids = np.unique(clefts)[1:]
    grid = OutputGrid(clefts.shape, block)  # type: ignore[arg-type]
    seen: dict[int, set] = {int(i): set() for i in ids}
    for index in grid.indices():
        box = grid.box(index)
        for i in np.unique(clefts[tuple(slice(a, b) for a, b in box)]):
            if i:
                seen[int(i)].add(index)
    return sum(len(s) > 1 for s in seen.values())


@pytest.mark.parametrize(
    ("voxel", "block"),
    [
        (WORKING_NM, (5, 32, 40)),  # the model's voxel size: no resampling
        (WORKING_NM, (13, 90, 100)),  # one block
        ((50.0, 6.0, 7.0), (3, 17, 64)),  # resampled, odd blocks
        ((30.0, 10.0, 9.0), (4, 50, 33)),
    ],
)
def test_bulk_equals_the_whole_volume(detector, tmp_path, voxel, block) -> None:
    image = noise_image((13, 90, 100))
    whole = whole_volume(detector, image, voxel)
    write_volume(tmp_path / "image.zarr", image, voxel, chunks=(4, 32, 32))
    job, result = _bulk(
        detector, str(tmp_path / "image.zarr"), tmp_path / "out.zarr", block=block, workers=0
    )
    assert result.n_clefts == int(whole[1].max()) > 10
    assert_same_outputs(tmp_path / "out.zarr", whole)
    if block != image.shape:
        assert max(job.windows.counts) > 1  # several window blocks, their spills summed
        assert _crossing(whole[1], block) > 0  # clefts stitched across block faces
    assert not (tmp_path / "out.zarr" / "_bulk").exists()  # scratch removed


@pytest.mark.parametrize("radius", [8.0, 16.0])
def test_joining_fragments_block_by_block_equals_the_whole_volume(
    detector, tmp_path, radius
) -> None:
    """``join_radius_nm``: fragments closer in-plane than the radius are one cleft, across
    block faces too (each label block reads a halo of the radius)."""
    from bulk_cases import cpu

    from napari_avan.core.clefts import clefts_from_probability
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import detect

    voxel, block = (50.0, 6.0, 7.0), (4, 23, 31)
    image = noise_image((13, 90, 100))
    model = resolve_model(str(detector), "cleft-detector")
    found = detect(model, image, voxel, run=cpu(), join_radius_nm=radius)
    threshold = float(model.metadata["postprocess"]["threshold"])
    apart = clefts_from_probability(found.prob, threshold=threshold, min_size=1)
    joined = clefts_from_probability(
        found.prob, threshold=threshold, min_size=1, join_radius_nm=radius, voxel_size_nm=voxel
    )
    assert joined.max() < apart.max()  # the radius joins fragments here
    write_volume(tmp_path / "image.zarr", image, voxel, chunks=(4, 32, 32))
    _, result = _bulk(
        detector, str(tmp_path / "image.zarr"), tmp_path / "out.zarr", block=block, workers=0,
        join_radius_nm=radius,
    )  # fmt: skip
    assert result.n_clefts == int(found.clefts.max()) > 3
    assert_same_outputs(tmp_path / "out.zarr", (found.prob, found.clefts, found.table))
    # some joined cleft has fragments in two blocks that touch only once dilated
    grid = OutputGrid(image.shape, block)  # type: ignore[arg-type]
    owner = np.zeros(image.shape, np.int64)
    for k, index in enumerate(grid.indices()):
        owner[tuple(slice(a, b) for a, b in grid.box(index))] = k
    split = 0
    for cleft in np.unique(found.clefts)[1:]:
        pieces = np.unique(apart[found.clefts == cleft])
        blocks_of = [set(np.unique(owner[apart == p]).tolist()) for p in pieces]
        if len(pieces) > 1 and len(set().union(*blocks_of)) > 1:
            split += 1
    assert split > 0


def test_an_interrupted_run_resumes_to_the_same_output(detector, tmp_path) -> None:
    image, voxel = noise_image((13, 90, 100)), (50.0, 6.0, 7.0)
    whole = whole_volume(detector, image, voxel)
    write_volume(tmp_path / "image.zarr", image, voxel, chunks=(4, 32, 32))
    out = tmp_path / "out.zarr"
    job = plan_job(
        str(tmp_path / "image.zarr"), out, model=str(detector), device="cpu", block=(4, 40, 40)
    )
    phases = []
    for stop_in in ("predict", "label", "relabel"):
        steps = iter_bulk_detect(job, workers=0, resume=True)
        for step in steps:
            if step.phase == stop_in and step.done > 0 and step.done > len(phases):
                phases.append(step.phase)
                break
        steps.close()  # as if killed: the ledger holds what finished
        assert (out / "_bulk").exists() and not (out / "clefts.csv").exists()
    result = None
    for step in iter_bulk_detect(job, workers=0, resume=True):
        result = step.result
    assert result is not None and result.run.tasks_skipped > 0 and result.run.tasks_run > 0
    assert_same_outputs(out, whole)
    # a finished output resumes to itself, with the settings it was made with only
    again = list(iter_bulk_detect(job, workers=0, resume=True))[-1].result
    assert again.run.tasks_run == 0
    assert_same_outputs(out, whole)
    other = plan_job(str(tmp_path / "image.zarr"), out, model=str(detector), device="cpu",
                     block=(4, 40, 40), min_size=3)  # fmt: skip
    with pytest.raises(AvanInputError, match="was made with other settings \\(min_size differ"):
        list(iter_bulk_detect(other, workers=0, resume=True))


def test_refusals(detector, tmp_path) -> None:
    image, voxel = noise_image((6, 40, 40)), WORKING_NM
    write_volume(tmp_path / "image.zarr", image, voxel)
    spec = str(tmp_path / "image.zarr")
    out = tmp_path / "out.zarr"
    _bulk(detector, spec, out, workers=0)
    with pytest.raises(AvanInputError, match="exists: pass --overwrite"):
        _bulk(detector, spec, out, workers=0)
    # an unfinished run is resumed only with the settings it started with
    job = plan_job(spec, tmp_path / "b.zarr", model=str(detector), device="cpu", block=(3, 20, 20))
    steps = iter_bulk_detect(job, workers=0)
    next(steps)
    steps.close()
    other = plan_job(
        spec,
        tmp_path / "b.zarr",
        model=str(detector),
        device="cpu",
        block=(3, 20, 20),
        threshold=0.9,
    )
    with pytest.raises(AvanInputError, match="threshold differ"):
        list(iter_bulk_detect(other, workers=0, resume=True))
    with pytest.raises(AvanInputError, match="not both"):
        list(iter_bulk_detect(job, workers=1, scheduler="tcp://127.0.0.1:1", resume=True))
    with pytest.raises(AvanInputError, match="three positive"):
        plan_job(spec, tmp_path / "c.zarr", model=str(detector), block=(0, 4, 4))
    write_volume(tmp_path / "novoxel.zarr", image, None)
    with pytest.raises(AvanInputError, match="voxel size"):
        plan_job(str(tmp_path / "novoxel.zarr"), tmp_path / "d.zarr", model=str(detector))


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_same_output(detector, tmp_path) -> None:
    image, voxel = noise_image((13, 90, 100)), (50.0, 6.0, 7.0)
    whole = whole_volume(detector, image, voxel)
    write_volume(tmp_path / "image.zarr", image, voxel, chunks=(4, 32, 32))
    _, result = _bulk(
        detector, str(tmp_path / "image.zarr"), tmp_path / "out.zarr", block=(4, 40, 40), workers=2
    )
    assert result.run.executor == "a local dask cluster of 2 workers"
    assert_same_outputs(tmp_path / "out.zarr", whole)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_an_existing_dask_cluster_gives_the_same_output(detector, tmp_path) -> None:
    """A scheduler and a worker started apart from the run, as on a real cluster."""
    import subprocess
    import sys
    import time

    image, voxel = noise_image((13, 90, 100)), WORKING_NM
    whole = whole_volume(detector, image, voxel)
    write_volume(tmp_path / "image.zarr", image, voxel, chunks=(4, 32, 32))
    address = f"tcp://127.0.0.1:{_free_port()}"
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [
            bin_dir / "dask",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            address.rsplit(":")[-1],
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            bin_dir / "dask",
            "worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "2",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:  # wait for both workers to join
            try:
                with Client(address, timeout="2s") as client:
                    if len(client.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dask cluster did not start"
            time.sleep(0.5)
        _, result = _bulk(
            detector,
            str(tmp_path / "image.zarr"),
            tmp_path / "out.zarr",
            block=(5, 32, 40),
            scheduler=address,
        )
        assert result.run.executor == f"the dask cluster at {address} (2 workers)"
        assert_same_outputs(tmp_path / "out.zarr", whole)
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("name", "fmt", "key", "spec_key"),
    [("image.h5", "hdf5", "volumes/raw", "volumes/raw"), ("image.ome.zarr", "ome-zarr", None, "0")],
)
def test_bulk_reads_hdf5_and_ome_zarr_lazily(detector, tmp_path, name, fmt, key, spec_key) -> None:
    """Chunked HDF5 datasets and OME-Zarr levels are volume specs like any other."""
    image, voxel = noise_image((13, 90, 100)), (50.0, 6.0, 7.0)
    whole = whole_volume(detector, image, voxel)
    write_volume(tmp_path / name, image, voxel, format=fmt, key=key, chunks=(4, 32, 32))
    spec = f"{tmp_path / name}:{spec_key}"
    _, result = _bulk(detector, spec, tmp_path / "out.zarr", block=(4, 40, 40), workers=0)
    assert result.n_clefts == int(whole[1].max())
    assert_same_outputs(tmp_path / "out.zarr", whole)

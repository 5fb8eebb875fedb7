"""Cleft detection over a volume larger than memory, block by block, resumable.

The output is the whole-volume path's (:func:`napari_avan.models.detect.iter_detect`) bit for
bit: the same probability map, the same cleft labels and ids, the same cleft table (scores
to the last few bits of a float64 sum). It is reached in four phases of independent tasks,
each recorded in the run's ledger (``OUT.zarr/_bulk``) when done:

1. **predict** (one task per window block, :class:`~napari_avan.bulk.grid.WindowGrid`): read
   the image around the block, resample it to the model's voxel size, pad it as the whole
   volume is padded, predict each window once and blend in exact int64 fixed point
   (:func:`napari_avan.models.inference.fixed_point`). Voxels that no other block reaches are
   final and written to the working map; the sums of the others (thin slabs along the
   block faces) go to scratch arrays, one per neighbour they belong to;
2. **finish** (one task per cell with such slabs): add up the slabs' sums and finish them;
3. **label** (one task per output block): resample the working map to the image's voxel size,
   write the probability, threshold, label 6-connected components, measure them (with
   ``join_radius_nm``: the components of the mask dilated in-plane by the radius, from the
   block grown by it, measured on the thresholded voxels);
4. **stitch** (here) and **relabel** (one task per output block): join the labels touching
   across block faces, drop small clefts, number them in scan order, write the labels; then
   the cleft table, and the scratch arrays are removed.

Memory is bounded by the block sizes, not the volume. ``resume`` skips every task the ledger
records, so a run killed at any point and run again gives identical output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.bulk.cluster import BulkProgress, RunStats, changed_settings
from napari_avan.bulk.grid import (
    DEFAULT_BLOCK,
    Box,
    OutputGrid,
    Shape3,
    WindowGrid,
    box_shape,
    box_slices,
    check_block,
    intersect,
    make_window_grid,
    offsets,
)
from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size

#: Ledger and scratch arrays inside the output store while a run is unfinished.
LEDGER = "_bulk"
#: The format of the ledger; a resume refuses another.
LEDGER_VERSION = 1
PHASES = ("predict", "finish", "label", "relabel")


@dataclass
class BulkResult:
    """What a finished bulk detection wrote: the store and how many clefts; how it ran."""

    out: Path
    n_clefts: int
    run: RunStats


@dataclass(frozen=True)
class Job:
    """Everything a task needs, small and picklable (it travels to dask workers)."""

    image: str
    image_voxel: VoxelSize
    image_shape: Shape3
    work_shape: Shape3
    model: str | None
    run: Any  # the client's RunPlan: every worker runs the network the same way
    out: str
    windows: WindowGrid
    output: OutputGrid
    threshold: float
    min_size: int
    out_channels: int
    activation: str
    proximity: bool
    flip_tta: bool
    batch_size: int
    join_radius_nm: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return Path(self.out)

    def join_structure(self) -> np.ndarray | None:
        """The in-plane disc that joins fragments (``join_radius_nm``), or None."""
        if self.join_radius_nm <= 0:
            return None
        from napari_avan.core.geometry import inplane_structure

        return inplane_structure(self.join_radius_nm, self.image_voxel, 1)

    @property
    def ledger(self) -> Path:
        return Path(self.out) / LEDGER


# ----------------------------------------------------------------------------- the ledger


def _marker(job: Job, phase: str, index: tuple[int, ...]) -> Path:
    return job.ledger / "done" / f"{phase}-{'-'.join(str(i) for i in index)}"


def _is_done(job: Job, phase: str, index: tuple[int, ...]) -> bool:
    return _marker(job, phase, index).exists()


def _mark_done(job: Job, phase: str, index: tuple[int, ...]) -> None:
    path = _marker(job, phase, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _stats_path(job: Job, index: tuple[int, ...]) -> Path:
    return job.ledger / "stats" / f"{'-'.join(str(i) for i in index)}.npz"


def _save_stats(job: Job, index: tuple[int, ...], stats: dict[str, np.ndarray]) -> None:
    path = _stats_path(job, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **stats)  # type: ignore[arg-type]
    os.replace(tmp, path)  # a reader never sees half a file


# ----------------------------------------------------------------------------- arrays


def _open(job: Job, key: str) -> Any:
    import zarr

    return zarr.open_array(store=str(job.root / key), mode="r+")


def _create(
    path: Path,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: Any,
    attrs: dict,
    *,
    scratch: bool = False,
) -> None:
    """A zarr v3 array; ``scratch`` ones (read back once, then removed) use a fast codec."""
    import zarr

    from napari_avan.io._arrays import fill_value_for

    extra: dict[str, Any] = {}
    if scratch:
        from zarr.codecs import BloscCodec

        extra["compressors"] = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")
    zarr.create_array(
        store=str(path),
        shape=shape,
        chunks=chunks,
        dtype=np.dtype(dtype),
        fill_value=fill_value_for(np.dtype(dtype)),
        zarr_format=3,
        attributes=attrs,
        **extra,
        dimension_names=("c", "z", "y", "x") if len(shape) == 4 else ("z", "y", "x"),
    )


def _read(array: Any, box: Box) -> np.ndarray:
    return np.asarray(array[box_slices(box)])


# ----------------------------------------------------------------------------- timing


class Clock:
    """Seconds a task spends reading, in the network, computing and writing."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[what] = self.seconds.get(what, 0.0) + elapsed


#: What a task returns when the ledger says an earlier run did it.
SKIPPED: dict[str, float] = {}


# ----------------------------------------------------------------------------- workers' caches

_NETWORKS: dict[tuple[str | None, str, int], tuple[Any, Any, dict[str, Any]]] = {}


def _network(job: Job, threads: int) -> tuple[Any, Any, dict[str, Any]]:
    """The job's detector, prepared as the client's run plan says (device, precision and
    memory format) with ``threads`` CPU threads, loaded once per worker process."""
    import torch

    from napari_avan.models.checkpoint import resolve_model

    key = (job.model, job.run.describe(), threads)
    if key not in _NETWORKS:
        from napari_avan.models.device import tune_allocator

        tune_allocator()  # this worker process runs networks
        model = resolve_model(job.model, "cleft-detector")
        torch.set_num_threads(threads)
        run = replace(job.run, threads=threads)
        _NETWORKS.clear()
        _NETWORKS[key] = (run.prepare(model.network), run, model.metadata)
    return _NETWORKS[key]


def _image_region(job: Job, box: Box) -> np.ndarray:
    """The image voxels ``box`` as float32, read lazily from the job's volume spec."""
    from napari_avan.io import read_volume
    from napari_avan.models.inference import to_float

    volume = read_volume(job.image, job.image_voxel, lazy=True, role="image")
    part = volume.data[box_slices(box)]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")  # inside a dask task: no nested graph
    return to_float(np.asarray(part))


# ----------------------------------------------------------------------------- phase 1


def predict_block(job: Job, index: Shape3, threads: int = 1) -> dict[str, float]:
    """Phase 1: predict the windows of window block ``index`` (see the module docstring)."""
    from napari_avan.models.inference import (
        blend_norms,
        bump,
        fixed_point,
        linear_source_span,
        resample_linear,
        window_outputs,
    )

    if _is_done(job, "predict", index):
        return SKIPPED
    clock = Clock()
    grid = job.windows
    starts = grid.windows(index)
    if starts:
        network, run, _ = _network(job, threads)
        cover = grid.coverage(index)
        sources = [grid.source_index(a, cover[a]) for a in range(3)]
        work_box = tuple((int(s.min()), int(s.max()) + 1) for s in sources)
        image_box = tuple(
            linear_source_span(job.image_shape[a], job.work_shape[a], *work_box[a])
            for a in range(3)
        )
        with clock("read"):
            image = _image_region(job, image_box)  # type: ignore[arg-type]
        with clock("compute"):
            work = resample_linear(
                image,
                job.work_shape,
                region=work_box,
                source_offset=[b[0] for b in image_box],
                source_shape=job.image_shape,
            )
            local = [s - b[0] for s, b in zip(sources, work_box, strict=True)]
            padded = work[np.ix_(*local)][None]
        origin = [c[0] for c in cover]
        weight = bump(grid.patch, grid.overlap)
        acc = np.zeros((job.out_channels, *box_shape(cover)), np.int64)
        for first in range(0, len(starts), job.batch_size):
            chunk = [
                tuple(s - o for s, o in zip(start, origin, strict=True))
                for start in starts[first : first + job.batch_size]
            ]
            with clock("network"):
                outputs = window_outputs(
                    network, padded, chunk, grid.patch, job.out_channels, run,
                    job.flip_tta, job.activation,
                )  # fmt: skip
            with clock("compute"):
                for (z, y, x), values in zip(chunk, outputs, strict=True):
                    p = grid.patch
                    acc[:, z : z + p[0], y : y + p[1], x : x + p[2]] += fixed_point(values, weight)
        cell = grid.cell(index)
        norms = blend_norms(grid.padded_shape, grid.starts, grid.patch, grid.overlap)

        def local_box(box: Box) -> tuple[slice, ...]:
            return (
                slice(None),
                *(slice(a - o, b - o) for (a, b), o in zip(box, origin, strict=True)),
            )

        # sums this block shares with later cells, and its own part of its inflow slabs
        for e in offsets():
            if e == (0, 0, 0):
                boxes = grid.inflow_slabs(index)
                target = index
            else:
                target = tuple(i + d for i, d in zip(index, e, strict=True))  # type: ignore[assignment]
                if any(t >= n for t, n in zip(target, grid.counts, strict=True)):
                    continue
                spill = intersect(cover, grid.cell(target))
                boxes = [] if spill is None else [spill]
            for box in boxes:
                part = intersect(box, cover)
                if part is not None:
                    with clock("write"):
                        partial = _open(job, f"{LEDGER}/partial_{''.join(map(str, e))}")
                        partial[(slice(None), *box_slices(part))] = acc[local_box(part)]
        # the rest of the cell is final: no other block reaches it
        iz, iy, ix = ((grid.inflow_end(a, i), cell[a][1]) for a, i in enumerate(index))
        interior: Box = (iz, iy, ix)
        if all(a < b for a, b in interior):
            _write_final(job, interior, acc[local_box(interior)], norms, clock)
    _mark_done(job, "predict", index)
    return clock.seconds


def _write_final(
    job: Job, box: Box, sums: np.ndarray, norms: list[np.ndarray], clock: Clock
) -> None:
    from napari_avan.models.detect import cleft_map
    from napari_avan.models.inference import blend_result

    with clock("compute"):
        blended = blend_result(sums, norms, box)
        meta = {"target": "proximity"} if job.proximity else {}
        values = cleft_map(meta, blended)
    with clock("write"):
        _open(job, f"{LEDGER}/work_prob")[box_slices(box)] = values


# ----------------------------------------------------------------------------- phase 2


def finish_cell(job: Job, index: Shape3) -> dict[str, float]:
    """Phase 2: add up every block's sums over the inflow slabs of cell ``index``."""
    from napari_avan.models.inference import blend_norms

    if _is_done(job, "finish", index):
        return SKIPPED
    clock = Clock()
    grid = job.windows
    norms = blend_norms(grid.padded_shape, grid.starts, grid.patch, grid.overlap)
    partials = [_open(job, f"{LEDGER}/partial_{''.join(map(str, e))}") for e in offsets()]
    for slab in grid.inflow_slabs(index):
        total = np.zeros((job.out_channels, *box_shape(slab)), np.int64)
        with clock("read"):
            for partial in partials:
                total += np.asarray(partial[(slice(None), *box_slices(slab))])
        _write_final(job, slab, total, norms, clock)
    _mark_done(job, "finish", index)
    return clock.seconds


# ----------------------------------------------------------------------------- phase 3


def label_block(job: Job, index: Shape3) -> dict[str, float]:
    """Phase 3: the probability of output block ``index`` at the image's voxel size, its
    thresholded components (local ids) and their statistics."""
    import cc3d

    from napari_avan.bulk.stitch import block_statistics
    from napari_avan.models.inference import linear_source_span, resample_linear

    if _is_done(job, "label", index):
        return SKIPPED
    clock = Clock()
    box = job.output.box(index)
    # joining fragments dilates the mask in-plane: a halo of the disc's half width around
    # the block makes the dilation inside the block the whole volume's
    structure = job.join_structure()
    halo = (0, 0, 0) if structure is None else tuple(n // 2 for n in structure.shape)
    inner = box
    box = tuple(  # type: ignore[assignment]
        (max(0, a - h), min(n, b + h))
        for (a, b), h, n in zip(inner, halo, job.image_shape, strict=True)
    )
    span = [linear_source_span(job.work_shape[a], job.image_shape[a], *box[a]) for a in range(3)]
    pads = job.windows.pads
    padded = tuple((a + p[0], b + p[0]) for (a, b), p in zip(span, pads, strict=True))
    with clock("read"):
        work = _read(_open(job, f"{LEDGER}/work_prob"), padded)  # type: ignore[arg-type]
    with clock("compute"):
        prob = resample_linear(
            work,
            job.image_shape,
            region=box,
            source_offset=[s[0] for s in span],
            source_shape=job.work_shape,
        )
        mask = prob > job.threshold
        crop = tuple(slice(a - g[0], b - g[0]) for (a, b), g in zip(inner, box, strict=True))
        if structure is None:
            labels = cc3d.connected_components(mask, connectivity=6, out_dtype=np.uint32)
            stats = block_statistics(labels, prob, [b[0] for b in box], job.image_shape)
        else:
            from napari_avan.core.geometry import dilate_mask

            # labels of the joined mask (they meet across faces), measured on the
            # thresholded voxels only, as clefts_from_probability keeps them
            joined = dilate_mask(mask, structure)[crop]
            prob, mask = prob[crop], mask[crop]
            box = inner
            labels = cc3d.connected_components(joined, connectivity=6, out_dtype=np.uint32)
            masked = np.where(mask, labels, np.uint32(0))
            stats = block_statistics(masked, prob, [b[0] for b in box], job.image_shape)
            stats = _padded_statistics(stats, int(labels.max()))
    with clock("write"):
        _open(job, "cleft_prob")[box_slices(box)] = prob
        _open(job, f"{LEDGER}/local")[box_slices(box)] = labels
        _save_stats(job, index, stats)
    _mark_done(job, "label", index)
    return clock.seconds


def _padded_statistics(stats: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """A block's statistics for labels 1..``n``, some of which have no voxel measured (a
    joined component whose thresholded voxels all lie in other blocks): size 0, an empty
    box (begin above end), no first voxel."""
    have = int(stats["size"].size)
    big = np.iinfo(np.int64).max
    fill = {"size": 0, "first": big, "coord_sum": 0, "begin": big, "end": -1, "value_sum": 0.0}
    out = {}
    for key, value in stats.items():
        extra = np.full((n - have, *value.shape[1:]), fill[key], dtype=value.dtype)
        out[key] = np.concatenate([value, extra]) if n > have else value.copy()
    empty = out["size"] == 0
    out["begin"][empty] = big
    out["end"][empty] = -1
    return out


# ----------------------------------------------------------------------------- phase 4


def relabel_block(job: Job, index: Shape3, lookup: np.ndarray) -> dict[str, float]:
    """Phase 4: write output block ``index``'s clefts with their global ids."""
    if _is_done(job, "relabel", index):
        return SKIPPED
    clock = Clock()
    box = job.output.box(index)
    with clock("read"):
        local = _read(_open(job, f"{LEDGER}/local"), box)
        if job.join_radius_nm > 0:  # joined labels: the clefts keep the thresholded voxels
            keep = _read(_open(job, "cleft_prob"), box) > job.threshold
    with clock("write"):
        labels = lookup[local]
        if job.join_radius_nm > 0:
            labels[~keep] = 0
        _open(job, "clefts")[box_slices(box)] = labels
    _mark_done(job, "relabel", index)
    return clock.seconds


def _stitch(job: Job) -> Any:
    from napari_avan.bulk.stitch import block_faces, face_pairs, stitch

    grid = job.output
    blocks = {}
    for index in grid.indices():
        with np.load(_stats_path(job, index)) as data:
            blocks[index] = {k: data[k] for k in data.files}
    local = _open(job, f"{LEDGER}/local")
    pairs = []
    for index, nxt, axis, face in block_faces(grid):
        planes = _read(local, face)
        found = face_pairs(np.take(planes, 0, axis=axis), np.take(planes, 1, axis=axis))
        if found.size:
            pairs.append((index, nxt, found))
    return stitch(blocks, pairs, job.min_size)


# ----------------------------------------------------------------------------- the run


def _task(args: tuple[str, Job, Shape3, Any, int]) -> dict[str, float]:
    """One task of any phase (the function dask runs)."""
    phase, job, index, extra, threads = args
    if phase == "predict":
        return predict_block(job, index, threads)
    if phase == "finish":
        return finish_cell(job, index)
    if phase == "label":
        return label_block(job, index)
    return relabel_block(job, index, extra)


def _fingerprint(model: Any) -> str:
    sha = model.metadata.get("weights_sha256")
    if sha:
        return str(sha)
    digest = hashlib.sha256(json.dumps(model.metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def plan_job(
    image: str,
    out: Path,
    *,
    model: str | None = None,
    voxel_size_nm: VoxelSize | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    block: tuple[int, int, int] | None = None,
    device: str = "auto",
    flip_tta: bool = False,
    batch_size: int = 1,
    join_radius_nm: float = 0.0,
) -> Job:
    """The job of a bulk detection of ``image`` (a volume spec) into ``out``; reads only the
    volume's metadata and the model."""
    from napari_avan.io import read_volume
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import detector_windows, min_size_voxels, output_activation
    from napari_avan.models.device import plan
    from napari_avan.models.inference import pad_widths, working_shape
    from napari_avan.models.networks import ResidualSymmetricUNet

    volume = read_volume(image, voxel_size_nm, lazy=True, role="image")
    if volume.voxel_size_nm is None:
        raise AvanInputError(f"{image} records no voxel size: pass it (--voxel-size Z,Y,X in nm)")
    voxel = check_voxel_size(volume.voxel_size_nm)
    shape = tuple(int(n) for n in volume.data.shape)
    loaded = resolve_model(model, "cleft-detector")
    network = loaded.network
    if not isinstance(network, ResidualSymmetricUNet) or network.config.in_channels != 1:
        raise AvanInputError("this model is not a cleft detector (it must take the image alone)")
    meta = loaded.metadata
    working = check_voxel_size(meta.get("voxel_size_nm", voxel), what="model voxel size")
    work_shape = working_shape(shape, voxel, working)
    patch, overlap = detector_windows(meta, work_shape, network.config.divisor)
    pads = pad_widths(work_shape, patch, overlap)  # type: ignore[arg-type]
    out_block = check_block(block or DEFAULT_BLOCK)
    out_block = (
        min(out_block[0], shape[0]),
        min(out_block[1], shape[1]),
        min(out_block[2], shape[2]),
    )
    target = [max(1, round(b * v / w)) for b, v, w in zip(out_block, voxel, working, strict=True)]
    windows = make_window_grid(work_shape, patch, overlap, pads, target)
    post = meta.get("postprocess") or {}
    run = plan(device)
    job = Job(
        image=str(image),
        image_voxel=voxel,
        image_shape=(shape[0], shape[1], shape[2]),
        work_shape=(work_shape[0], work_shape[1], work_shape[2]),
        model=model,
        run=run,
        out=str(out),
        windows=windows,
        output=OutputGrid((shape[0], shape[1], shape[2]), out_block),
        threshold=float(post.get("threshold", 0.5)) if threshold is None else float(threshold),
        min_size=min_size_voxels(loaded, voxel) if min_size is None else int(min_size),
        out_channels=int(network.config.out_channels),
        activation=output_activation(meta),
        proximity=meta.get("target") == "proximity",
        flip_tta=bool(flip_tta),
        batch_size=max(1, int(batch_size)),
        join_radius_nm=max(0.0, float(join_radius_nm)),
    )
    params = {
        "ledger_version": LEDGER_VERSION,
        "image": str(image),
        "image_shape": list(job.image_shape),
        "voxel_size_nm": list(voxel),
        "model": model or "cleft-detector",
        "model_fingerprint": _fingerprint(loaded),
        "precision": run.describe().split("(")[1].split(",")[0].rstrip(")"),
        "threshold": job.threshold,
        "min_size": job.min_size,
        "block": list(out_block),
        "window_group": list(windows.group),
        "flip_tta": job.flip_tta,
    }
    if job.join_radius_nm > 0:  # absent otherwise, as in runs made before it existed
        params["join_radius_nm"] = job.join_radius_nm
    return replace(job, params=params)


def _start_store(job: Job, resume: bool, overwrite: bool) -> None:
    """Create the output store and its ledger, or check an unfinished one before resuming."""
    import zarr

    root = job.root
    params_path = job.ledger / "params.json"
    if root.exists():
        recorded = recorded_settings(root)
        if resume and recorded is not None:
            before, what = recorded
            changed = changed_settings(before, job.params)
            if changed:
                raise AvanInputError(
                    f"{root} {what} with other settings ({', '.join(changed)} differ): "
                    "rerun with the same ones, or with --overwrite to start again"
                )
            return
        if not overwrite:
            what = "holds no unfinished bulk run to resume" if resume else "exists"
            raise AvanInputError(f"{root} {what}: pass --overwrite to replace it")
        shutil.rmtree(root) if root.is_dir() else root.unlink()
    voxel = list(job.image_voxel)
    zarr.open_group(str(root), mode="w", zarr_format=3, attributes={"voxel_size_nm": voxel})
    chunks = job.output.block
    for key, dtype in (("cleft_prob", np.float32), ("clefts", np.uint32)):
        _create(root / key, job.image_shape, chunks, dtype, {"voxel_size_nm": voxel})
    zarr.open_group(str(job.ledger), mode="w", zarr_format=3)
    grid = job.windows
    _create(job.ledger / "work_prob", grid.padded_shape, grid.group, np.float32, {}, scratch=True)
    for e in offsets():
        _create(
            job.ledger / f"partial_{''.join(map(str, e))}",
            (job.out_channels, *grid.padded_shape),
            (job.out_channels, *grid.group),
            np.int64,
            {},
            scratch=True,
        )
    _create(job.ledger / "local", job.image_shape, chunks, np.uint32, {}, scratch=True)
    params_path.write_text(json.dumps(job.params, indent=1))


def _is_complete(root: Path) -> bool:
    return (root / "clefts.csv").is_file() and not (root / LEDGER).exists()


def _finished_params(root: Path) -> dict[str, Any]:
    """The settings a finished bulk run recorded in its store's attributes ({}: none)."""
    import zarr

    try:
        recorded = zarr.open_group(str(root), mode="r").attrs.get("bulk_detect")
    except Exception:  # not a zarr group: zarr raises many kinds
        return {}
    return dict(recorded) if isinstance(recorded, dict) else {}


def recorded_settings(root: Path) -> tuple[dict[str, Any], str] | None:
    """The settings a bulk detection recorded in the store ``root`` and whether that run
    ``"was started"`` (unfinished: its ledger) or ``"was made"`` (finished: the store's
    attributes); None when it holds neither."""
    params = root / LEDGER / "params.json"
    if params.is_file():
        return json.loads(params.read_text()), "was started"
    if _is_complete(root):
        return _finished_params(root), "was made"
    return None


def iter_bulk_detect(
    job: Job,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[BulkProgress]:
    """Run a bulk detection (see the module docstring), yielding after every task.

    Args:
        job: from :func:`plan_job`.
        workers: 0 runs the tasks in this process, N on a local dask cluster of N workers.
        scheduler: address of an existing dask scheduler (instead of ``workers``).
        resume: continue an unfinished run into the same store (same settings), skipping
            what it finished; a finished one is left as it is.
        overwrite: replace an existing store.
    """
    import zarr

    from napari_avan.bulk.cluster import open_executor
    from napari_avan.core.tables import cleft_frame
    from napari_avan.io import write_table

    _start_store(job, resume, overwrite)
    if _is_complete(job.root):
        n = len(_read_table(job.root))
        yield BulkProgress(
            "done", 0, 0, BulkResult(job.root, n, RunStats(0, 0, "nothing (it was done)"))
        )
        return
    cells = job.windows.indices()
    blocks = job.output.indices()
    finish = [i for i in cells if job.windows.inflow_slabs(i)]
    total = len(cells) + len(finish) + 2 * len(blocks)
    done = ran = 0
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def add(task_seconds: dict[str, float]) -> None:
        for key, value in task_seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value

    with open_executor(workers, scheduler) as executor:
        seconds["executor start"] = time.perf_counter() - started
        for phase, items in (("predict", cells), ("finish", finish), ("label", blocks)):
            todo = [i for i in items if not _is_done(job, phase, i)]
            done += len(items) - len(todo)
            yield BulkProgress(phase, done, total)
            tasks = [(phase, job, i, None, executor.threads_per_task) for i in todo]
            phase_started = time.perf_counter()
            for task_seconds in executor.map(_task, tasks):
                done, ran = done + 1, ran + 1
                add(task_seconds)
                yield BulkProgress(phase, done, total)
            seconds[f"{phase} phase"] = time.perf_counter() - phase_started
        stitch_started = time.perf_counter()
        stitched = _stitch(job)
        seconds["stitch"] = time.perf_counter() - stitch_started
        todo = [i for i in blocks if not _is_done(job, "relabel", i)]
        done += len(blocks) - len(todo)
        yield BulkProgress("relabel", done, total)
        tasks = [("relabel", job, i, stitched.lookups[i], 1) for i in todo]
        for task_seconds in executor.map(_task, tasks):
            done, ran = done + 1, ran + 1
            add(task_seconds)
            yield BulkProgress("relabel", done, total)
        description = executor.description
    stitch_started = time.perf_counter()
    table = cleft_frame(stitched.statistics)
    zarr.open_group(str(job.root), mode="r+").attrs["bulk_detect"] = job.params
    write_table(table, job.root / "clefts.csv")
    shutil.rmtree(job.ledger)
    seconds["stitch"] += time.perf_counter() - stitch_started
    seconds["wall"] = time.perf_counter() - started
    result = BulkResult(job.root, len(table), RunStats(ran, total - ran, description, seconds))
    yield BulkProgress("done", total, total, result)


def _read_table(root: Path) -> Any:
    import pandas as pd

    return pd.read_csv(root / "clefts.csv")

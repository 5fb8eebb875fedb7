"""AVAN partner assignment over volumes larger than memory, each cleft once, resumable.

The edge table is the whole-volume command's (``napari-avan assign``), row for row, but for
the ``updated`` time stamp (one for the whole run). Two phases of independent tasks, each
recorded in the run's ledger (``EDGES.csv.bulk/``, beside the output) when done:

1. **measure** (one task per block of the cleft volume): each cleft's voxel count, integer
   coordinate sums and box in the block; merged here into the statistics the whole-volume
   path computes at once (the centroid is the exact integer sum over the count, so it is
   the same number);
2. **assign** (one task per group of clefts whose boxes start in one block): read the image,
   clefts and segmentation once over the group's region (its clefts' boxes grown by a patch
   and the candidate dilation), assign each of its clefts with
   :func:`napari_avan.models.assign.iter_assign` and measure their edges with
   :func:`napari_avan.core.tables.edge_table`; the group's rows are saved in the ledger.

The rows are then put in cleft order and written at once; the ledger is removed. With
``decisions`` (a proofreading session's start), each cleft's assignment is also written as an
``assign`` decision (partners, candidates and their scores: what the session's review order
ranks by), one JSON line per cleft in cleft order.
"""

from __future__ import annotations

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
from napari_avan.bulk.grid import OutputGrid, Shape3, box_slices, check_block
from napari_avan.core.geometry import LabelStatistics
from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size

#: Default block of the measure phase and of the grouping of clefts (z, y, x voxels).
DEFAULT_ASSIGN_BLOCK: Shape3 = (32, 256, 256)
LEDGER_VERSION = 2  # 2: each group also keeps its assign decisions


@dataclass
class AssignResult:
    """What a finished bulk assignment wrote: the table, its edges, the clefts and those
    left without partners; how it ran."""

    out: Path
    n_edges: int
    n_clefts: int
    unassigned: int
    run: RunStats


@dataclass(frozen=True)
class AssignJob:
    """Everything a task needs, small and picklable."""

    image: str
    clefts: str
    segmentation: str
    voxel: VoxelSize
    shape: Shape3
    model: str | None
    model_name: str
    run: Any
    out: str
    grid: OutputGrid
    polyadic: bool
    pre_threshold: float | None
    post_threshold: float | None
    flip_tta: bool
    batch_size: int
    stamp: str
    params: dict[str, Any] = field(default_factory=dict)
    decisions: str | None = None

    @property
    def ledger(self) -> Path:
        return Path(f"{self.out}.bulk")


def _volumes(job: AssignJob) -> tuple[Any, Any, Any]:
    from napari_avan.bulk.volumes import LazyVolume

    return (
        LazyVolume(job.image, job.voxel, "image"),
        LazyVolume(job.clefts, job.voxel, "clefts"),
        LazyVolume(job.segmentation, job.voxel, "segmentation"),
    )


def _done(job: AssignJob, name: str) -> Path:
    return job.ledger / "done" / name


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- phase 1


def measure_block(job: AssignJob, index: Shape3) -> dict[str, float]:
    """Phase 1: the statistics of the clefts in block ``index`` (saved in the ledger)."""
    from napari_avan.bulk.stitch import block_statistics

    name = "measure-" + "-".join(map(str, index))
    if _done(job, name).exists():
        return {}
    started = time.perf_counter()
    _, clefts, _ = _volumes(job)
    box = job.grid.box(index)
    labels = clefts[box_slices(box)]
    ids, inverse = np.unique(labels, return_inverse=True)
    local = inverse.reshape(labels.shape).astype(np.uint32)
    if ids.size and ids[0] == 0:
        ids = ids[1:]
    else:
        local += 1  # no background here: local labels start at 1
    read = time.perf_counter() - started
    stats = block_statistics(local, None, [b[0] for b in box], job.shape)
    path = job.ledger / "stats" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, ids=ids.astype(np.uint64), size=stats["size"], coord_sum=stats["coord_sum"],
                 begin=stats["begin"], end=stats["end"])  # fmt: skip
    os.replace(tmp, path)
    _done(job, name).parent.mkdir(parents=True, exist_ok=True)
    _done(job, name).touch()
    return {"read": read, "compute": time.perf_counter() - started - read}


def merged_statistics(job: AssignJob, dtype: Any) -> LabelStatistics:
    """Every cleft's statistics from the blocks' (as ``label_statistics`` of the whole)."""
    parts = []
    for index in job.grid.indices():
        name = "measure-" + "-".join(map(str, index))
        with np.load(job.ledger / "stats" / f"{name}.npz") as data:
            parts.append({k: data[k] for k in data.files})
    ids_all = np.concatenate([p["ids"] for p in parts]) if parts else np.zeros(0, np.uint64)
    ids, where = np.unique(ids_all, return_inverse=True)
    n = ids.size
    size = np.zeros(n, np.int64)
    coord_sum = np.zeros((n, 3), np.int64)
    begin = np.full((n, 3), np.iinfo(np.int64).max, np.int64)
    end = np.full((n, 3), -1, np.int64)
    size_all = np.concatenate([p["size"] for p in parts]) if parts else np.zeros(0, np.int64)
    np.add.at(size, where, size_all)
    for name, target, op in (("coord_sum", coord_sum, np.add), ("begin", begin, np.minimum),
                             ("end", end, np.maximum)):  # fmt: skip
        if not n:
            continue
        values = np.concatenate([p[name].reshape(-1, 3) for p in parts])
        for axis in range(3):
            op.at(target[:, axis], where, values[:, axis])
    return LabelStatistics(
        ids=ids.astype(dtype),
        size=size,
        centroid=coord_sum / np.maximum(size, 1)[:, None],
        bbox_begin=begin,
        bbox_end=end,
        value_mean=np.full(n, np.nan),
    )


# ----------------------------------------------------------------------------- phase 2


def _subset(stats: LabelStatistics, rows: np.ndarray) -> LabelStatistics:
    return LabelStatistics(*(np.asarray(f)[rows] for f in stats))


def group_region(job: AssignJob, stats: LabelStatistics) -> tuple[tuple[int, int], ...]:
    """The region a group of clefts reads: their boxes grown by an AVAN patch (a patch is
    centred on a voxel of its cleft, or shifted inside the volume) and the candidate
    dilation, inside the volume."""
    from napari_avan.core.geometry import (
        DEFAULT_DILATION_RADIUS_NM,
        DEFAULT_DILATION_SECTIONS,
        inplane_structure,
    )

    meta_patch = job.params["avan_patch"]
    working = job.params["avan_voxel_size_nm"]
    extent = [
        max(1, round(p * w / v)) for p, w, v in zip(meta_patch, working, job.voxel, strict=True)
    ]
    structure = inplane_structure(DEFAULT_DILATION_RADIUS_NM, job.voxel, DEFAULT_DILATION_SECTIONS)
    margin = [e + s // 2 + 1 for e, s in zip(extent, structure.shape, strict=True)]
    lo = stats.bbox_begin.min(axis=0)
    hi = stats.bbox_end.max(axis=0)
    return tuple(
        (max(0, int(a) - m), min(n, int(b) + m))
        for a, b, m, n in zip(lo, hi, margin, job.shape, strict=True)
    )


def assign_group(job: AssignJob, key: str, stats: LabelStatistics, threads: int) -> dict:
    """Phase 2: assign the clefts of ``stats`` (one group) and save their edge rows."""
    import torch

    from napari_avan.bulk.volumes import Window
    from napari_avan.core.session.decisions import assign_decision
    from napari_avan.core.tables import edge_table
    from napari_avan.models.assign import edge_weights, iter_assign
    from napari_avan.models.checkpoint import resolve_model

    if _done(job, key).exists():
        return {}
    clock: dict[str, float] = {}
    started = time.perf_counter()
    image, clefts, segmentation = _volumes(job)
    region = group_region(job, stats)
    # sliced like arrays by iter_assign and edge_table, which read only around the clefts
    image_w: Any = Window.read(image, region)
    clefts_w: Any = Window.read(clefts, region)
    seg_w: Any = Window.read(segmentation, region)
    clock["read"] = time.perf_counter() - started
    model = _MODELS.get(job.model)
    if model is None:
        from napari_avan.models.device import tune_allocator

        tune_allocator()  # this worker process runs networks
        _MODELS.clear()
        model = _MODELS[job.model] = resolve_model(job.model, "avan")
    torch.set_num_threads(threads)
    run = replace(job.run, threads=threads)
    started = time.perf_counter()
    assignments = []
    for step in iter_assign(
        model, image_w, clefts_w, seg_w, job.voxel,
        cleft_ids=[int(i) for i in stats.ids], run=run, polyadic=job.polyadic,
        pre_threshold=job.pre_threshold, post_threshold=job.post_threshold,
        batch_size=job.batch_size, flip_tta=job.flip_tta, statistics=stats,
    ):  # fmt: skip
        assignments.extend(step.finished)
    clock["network"] = time.perf_counter() - started
    started = time.perf_counter()
    weights = edge_weights(assignments)
    edges = edge_table(
        clefts_w, seg_w, weights[["cleft_id", "pre_id", "post_id"]], voxel_size_nm=job.voxel,
        weights=weights, model=job.model_name, updated=job.stamp, statistics=stats,
    )  # fmt: skip
    rows = {c: edges[c].tolist() for c in edges.columns}
    unassigned = sum(1 for a in assignments if not a.edges)
    clock["compute"] = time.perf_counter() - started
    started = time.perf_counter()
    decisions = [assign_decision(a, model=job.model_name) for a in assignments]
    _write_atomic(job.ledger / "edges" / f"{key}.json",
                  json.dumps({"rows": rows, "unassigned": unassigned,
                              "decisions": decisions}))  # fmt: skip
    _done(job, key).parent.mkdir(parents=True, exist_ok=True)
    _done(job, key).touch()
    clock["write"] = time.perf_counter() - started
    return clock


_MODELS: dict[str | None, Any] = {}


def _task(args: tuple[str, AssignJob, Any, Any, int]) -> dict[str, float]:
    phase, job, index, stats, threads = args
    if phase == "measure":
        return measure_block(job, index)
    return assign_group(job, index, stats, threads)


# ----------------------------------------------------------------------------- the run


def plan_assign_job(
    image: str,
    clefts: str,
    segmentation: str,
    out: Path,
    *,
    model: str | None = None,
    voxel_size_nm: VoxelSize | None = None,
    polyadic: bool = False,
    pre_threshold: float | None = None,
    post_threshold: float | None = None,
    block: tuple[int, int, int] | None = None,
    device: str = "auto",
    flip_tta: bool = False,
    batch_size: int = 4,
    decisions: Path | None = None,
) -> AssignJob:
    """The job of a bulk assignment; reads only the volumes' metadata and the model.
    ``decisions``: also write each cleft's ``assign`` decision there (JSON lines)."""
    from napari_avan.core.tables import timestamp
    from napari_avan.io import read_volume
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan
    from napari_avan.models.networks import UNetConfig
    from napari_avan.types import check_same_shape

    vols = {
        role: read_volume(spec, voxel_size_nm, lazy=True, role=role)
        for role, spec in (("image", image), ("clefts", clefts), ("segmentation", segmentation))
    }
    check_same_shape(**{role: v.data for role, v in vols.items()})
    for role in ("clefts", "segmentation"):
        if np.dtype(vols[role].data.dtype).kind not in "ui":
            raise AvanInputError(f"{role} must hold integer label ids, got {vols[role].data.dtype}")
    known = [v.voxel_size_nm for v in vols.values() if v.voxel_size_nm is not None]
    if not known:
        raise AvanInputError(f"{image} records no voxel size: pass it (--voxel-size Z,Y,X in nm)")
    voxel = check_voxel_size(known[0])
    shape = tuple(int(n) for n in vols["image"].data.shape)
    loaded = resolve_model(model, "avan")
    config = getattr(loaded.network, "config", None)
    if not isinstance(config, UNetConfig) or (config.in_channels, config.out_channels) != (2, 2):
        raise AvanInputError("this model is not an AVAN model (image + cleft in, pre + post out)")
    from napari_avan.models.assign import DEFAULT_AVAN_PATCH

    meta = loaded.metadata
    size = check_block(block or DEFAULT_ASSIGN_BLOCK)
    size = (min(size[0], shape[0]), min(size[1], shape[1]), min(size[2], shape[2]))
    run = plan(device)
    name = str(meta.get("name", Path(model or "avan").name))
    job = AssignJob(
        image=str(image), clefts=str(clefts), segmentation=str(segmentation), voxel=voxel,
        shape=(shape[0], shape[1], shape[2]), model=model, model_name=name, run=run,
        out=str(out), grid=OutputGrid((shape[0], shape[1], shape[2]), size),
        polyadic=bool(polyadic), pre_threshold=pre_threshold, post_threshold=post_threshold,
        flip_tta=bool(flip_tta), batch_size=max(1, int(batch_size)), stamp=timestamp(),
        decisions=None if decisions is None else str(decisions),
    )  # fmt: skip
    params = {
        "ledger_version": LEDGER_VERSION,
        "inputs": [str(image), str(clefts), str(segmentation)],
        "shape": list(shape),
        "voxel_size_nm": list(voxel),
        "model": model or "avan",
        "model_fingerprint": meta.get("weights_sha256"),
        "precision": run.describe(),
        "polyadic": job.polyadic,
        "pre_threshold": pre_threshold,
        "post_threshold": post_threshold,
        "block": list(size),
        "flip_tta": job.flip_tta,
        "avan_patch": [int(p) for p in meta.get("patch", DEFAULT_AVAN_PATCH)],
        "avan_voxel_size_nm": list(check_voxel_size(meta.get("voxel_size_nm", voxel))),
    }
    return replace(job, params=params)


def _start(job: AssignJob, resume: bool, overwrite: bool) -> None:
    out, ledger = Path(job.out), job.ledger
    params_path = ledger / "params.json"
    if resume and params_path.is_file():
        before = {k: v for k, v in json.loads(params_path.read_text()).items() if k != "stamp"}
        changed = changed_settings(before, job.params)
        if changed:
            raise AvanInputError(
                f"{ledger} was started with other settings ({', '.join(changed)} differ): rerun "
                "with the same ones, or with --overwrite to start again"
            )
        return
    if out.exists() and not overwrite:
        if resume:
            return  # finished before: nothing to do
        raise AvanInputError(f"{out} exists: pass --overwrite to replace it")
    if ledger.exists():
        if not overwrite:
            raise AvanInputError(
                f"{ledger} holds an unfinished run: pass --resume to continue it or "
                "--overwrite to start again"
            )
        shutil.rmtree(ledger)
    ledger.mkdir(parents=True)
    _write_atomic(params_path, json.dumps({**job.params, "stamp": job.stamp}, indent=1))


def iter_bulk_assign(
    job: AssignJob,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[BulkProgress]:
    """Run a bulk assignment (see the module docstring), yielding after every task."""
    import pandas as pd

    from napari_avan.bulk.cluster import open_executor
    from napari_avan.core.tables import EDGE_COLUMNS, empty_edge_table
    from napari_avan.io import write_table

    _start(job, resume, overwrite)
    out = Path(job.out)
    if resume and out.exists() and not job.ledger.exists():
        if job.decisions is not None and not Path(job.decisions).is_file():
            raise AvanInputError(
                f"{out} was finished without its decisions {job.decisions}: pass --overwrite "
                "to assign again"
            )
        n = len(pd.read_csv(out))
        result = AssignResult(out, n, 0, 0, RunStats(0, 0, "nothing (it was done)"))
        yield BulkProgress("done", 0, 0, result)
        return
    params = json.loads((job.ledger / "params.json").read_text())
    job = replace(job, stamp=params["stamp"])  # a resumed run keeps its time stamp
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    blocks = job.grid.indices()
    done = ran = 0
    with open_executor(workers, scheduler) as executor:
        todo = [i for i in blocks if not _done(job, "measure-" + "-".join(map(str, i))).exists()]
        done = len(blocks) - len(todo)
        total = len(blocks)
        yield BulkProgress("measure", done, total)
        for task_seconds in executor.map(_task, [("measure", job, i, None, 1) for i in todo]):
            done, ran = done + 1, ran + 1
            for k, v in task_seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
            yield BulkProgress("measure", done, total)
        from napari_avan.bulk.volumes import LazyVolume

        dtype = LazyVolume(job.clefts, job.voxel, "clefts").dtype
        stats = merged_statistics(job, dtype)
        groups = _groups(job, stats)
        total += len(groups)
        pending = [(k, s) for k, s in groups if not _done(job, k).exists()]
        done += len(groups) - len(pending)
        yield BulkProgress("assign", done, total)
        tasks = [("assign", job, k, s, executor.threads_per_task) for k, s in pending]
        for task_seconds in executor.map(_task, tasks):
            done, ran = done + 1, ran + 1
            for k, v in task_seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
            yield BulkProgress("assign", done, total)
        description = executor.description
    frames, unassigned, decisions = [], 0, []
    for key, _ in groups:
        saved = json.loads((job.ledger / "edges" / f"{key}.json").read_text())
        unassigned += int(saved["unassigned"])
        decisions += saved["decisions"]
        if saved["rows"]["cleft_segid"]:
            frames.append(pd.DataFrame(saved["rows"]))
    if frames:
        edges = pd.concat(frames, ignore_index=True)
        edges = edges.sort_values("cleft_segid", kind="stable", ignore_index=True)
        edges = edges[list(EDGE_COLUMNS)]
    else:
        edges = empty_edge_table()
    if job.decisions is not None:
        decisions.sort(key=lambda d: int(d["cleft"]))
        _write_atomic(
            Path(job.decisions), "".join(json.dumps(d, sort_keys=True) + "\n" for d in decisions)
        )
    write_table(edges, out, overwrite=True)
    shutil.rmtree(job.ledger)
    seconds["wall"] = time.perf_counter() - started
    run = RunStats(ran, total - ran, description, seconds)
    result = AssignResult(out, len(edges), int(stats.ids.size), unassigned, run)
    yield BulkProgress("done", total, total, result)


def _groups(job: AssignJob, stats: LabelStatistics) -> list[tuple[str, LabelStatistics]]:
    """Clefts grouped by the block their box starts in, in block order."""
    block = np.asarray(job.grid.block)
    starts = stats.bbox_begin // block
    order = np.lexsort((stats.ids.astype(np.uint64), starts[:, 2], starts[:, 1], starts[:, 0]))
    groups = []
    keys = [tuple(int(v) for v in starts[i]) for i in order]
    first = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or keys[k] != keys[first]:
            name = "assign-" + "-".join(map(str, keys[first]))
            groups.append((name, _subset(stats, order[first:k])))
            first = k
    return groups

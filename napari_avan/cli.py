"""The ``napari-avan`` command line (docs/architecture.md, the command-line contract).

Every subcommand has ``--help``; exit code 0 on success, 2 on bad input with a
one-line reason on stderr. Heavy modules are imported inside the subcommands so
that ``napari-avan --help`` is quick.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_avan import __version__
from napari_avan.types import (
    AvanInputError,
    VoxelSize,
    check_same_shape,
    one_line,
    parse_voxel_size,
)

PROG = "napari-avan"


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not Z,Y,X integers") from err
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"shape {text!r} must be three positive integers Z,Y,X")
    return (parts[0], parts[1], parts[2])


def _number(
    convert: Callable[[str], float], low: float | None, high: float | None, *, open_low: bool
) -> Callable[[str], Any]:
    """An argparse type: a finite number of kind ``convert`` within [low, high]."""
    if low is None:
        lower = ""
    else:
        lower = f"> {low:g}" if open_low else f">= {low:g}"
    upper = "" if high is None else f"<= {high:g}"
    wanted = " and ".join(p for p in (lower, upper) if p) or "finite"
    noun = "an integer" if convert is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number ({wanted})")
        too_low = low is not None and (value <= low if open_low else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} must be {wanted}")
        return value

    parse.__name__ = f"{noun} {wanted}"
    return parse


#: Option types: probabilities and thresholds, positive and non-negative numbers.
_PROBABILITY = _number(float, 0.0, 1.0, open_low=False)
_POSITIVE = _number(float, 0.0, None, open_low=True)
_NON_NEGATIVE = _number(float, 0.0, None, open_low=False)
_COUNT = _number(int, 1, None, open_low=False)
_NON_NEGATIVE_INT = _number(int, 0, None, open_low=False)
_FRACTION = _number(float, 0.0, 1.0, open_low=True)


def _voxel_size(text: str) -> VoxelSize:
    try:
        return parse_voxel_size(text)
    except AvanInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


# ----------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo opens napari: the only subcommand that reaches into the plugin layer.
    from napari_avan._napari._demo import run_demo

    result = run_demo(Path(args.out), headless=args.headless, seed=args.seed)
    for line in result.summary_lines():
        print(line)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from napari_avan.core.synth import synthesize
    from napari_avan.io import write_sample

    overrides: dict[str, Any] = {"shape": args.shape, "polyadic": args.polyadic}
    if args.voxel_size is not None:
        overrides["voxel_size_nm"] = args.voxel_size
    sample = synthesize(seed=args.seed, **overrides)
    out = write_sample(Path(args.out), sample, overwrite=args.overwrite)
    n_clefts = int(sample.partners["cleft_id"].nunique()) if len(sample.partners) else 0
    print(
        f"wrote {out} (shape {tuple(sample.image.shape)}, voxel size {sample.voxel_size_nm} nm, "
        f"{n_clefts} clefts, {len(sample.partners)} partner pairs)"
    )
    return 0


def _read_labels(spec: str, role: str, voxel_size: VoxelSize | None = None) -> Any:
    from napari_avan.io import read_volume

    vol = read_volume(spec, voxel_size, lazy=False, role=role)
    if vol.data.dtype.kind not in "ui":
        raise AvanInputError(
            f"{role} {spec!r} has dtype {vol.data.dtype}: labels must be integers "
            "(0 background, ids 1..N)"
        )
    return vol


def _same_shape(**volumes: Any) -> None:
    check_same_shape(**{name: vol for name, vol in volumes.items() if vol is not None})


def _voxel_size_of(spec: str, *volumes: Any) -> VoxelSize:
    """The first voxel size any of ``volumes`` knows, or a one-line error naming ``spec``."""
    for vol in volumes:
        if vol is not None and vol.voxel_size_nm is not None:
            return vol.voxel_size_nm
    raise AvanInputError(
        f"the voxel size of {spec!r} is unknown: pass --voxel-size Z,Y,X (nm), e.g. 40,4,4"
    )


def _count(n: int, noun: str) -> str:
    """``3 clefts``, ``1 cleft``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _make_folder(path: Path) -> Path | None:
    """Create output folder ``path`` and missing parents; the topmost one created, or None."""
    if path.is_dir():
        return None
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        path.mkdir(parents=True)
    except OSError as err:
        raise AvanInputError(f"cannot create the folder {path}: {err.strerror or err}") from err
    return top


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise AvanInputError(f"{path} exists: pass --overwrite to replace it")


def _print_metrics(name: str, metrics: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return
    print(f"{name} metrics")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key:<24} {value:.4f}")
        elif isinstance(value, (int, str)):
            print(f"  {key:<24} {value}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_avan.core import metrics as m
    from napari_avan.io import read_partners, read_table

    result: dict[str, Any]
    if args.what == "clefts":
        pred = _read_labels(args.pred, "predicted clefts")
        truth = _read_labels(args.truth, "true clefts")
        _same_shape(predicted_clefts=pred, true_clefts=truth)
        result = m.cleft_metrics(
            pred.data, truth.data, iou_threshold=args.iou, any_overlap=args.any_overlap
        ).to_dict()
    elif args.what == "assignment":
        pred_table = read_table(Path(args.pred))
        truth_table = read_partners(Path(args.truth))
        polyadic = True if args.polyadic else None
        result = m.assignment_metrics(pred_table, truth_table, polyadic=polyadic).to_dict()
    else:
        pred_clefts = _read_labels(args.pred_clefts, "predicted clefts")
        true_clefts = _read_labels(args.truth_clefts, "true clefts")
        _same_shape(predicted_clefts=pred_clefts, true_clefts=true_clefts)
        pred_edges = read_table(Path(args.pred))
        truth_table = read_partners(Path(args.truth))
        result = m.edge_metrics(
            pred_clefts.data, pred_edges, true_clefts.data, truth_table
        ).to_dict()
    _print_metrics(args.what, result, args.json)
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from napari_avan.core.files import remove_path
    from napari_avan.core.tables import cleft_table, edge_table
    from napari_avan.io import read_partners, read_volume, write_tables

    clefts = _read_labels(args.clefts, "clefts", args.voxel_size)
    prob = read_volume(args.prob, lazy=False, role="cleft probability") if args.prob else None
    seg = _read_labels(args.segmentation, "segmentation") if args.segmentation else None
    _same_shape(clefts=clefts, cleft_probability=prob, segmentation=seg)
    if (seg is None) != (args.partners is None):
        raise AvanInputError("the edge table needs both --segmentation and --partners")
    partners = read_partners(Path(args.partners)) if args.partners else None
    voxel_size = clefts.voxel_size_nm or (seg.voxel_size_nm if seg is not None else None)

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AvanInputError(f"--out {out} is a file: give a folder for clefts.csv and edges.csv")
    targets = [out / "clefts.csv"] + ([out / "edges.csv"] if seg is not None else [])
    for target in targets:
        _refuse_existing(target, args.overwrite)
    # Compute everything before writing anything, so bad input leaves no partial output.
    cleft_df = cleft_table(clefts.data, None if prob is None else prob.data)
    edge_df = None
    if seg is not None:
        if voxel_size is None:
            raise AvanInputError(
                "the voxel size is unknown: pass --voxel-size Z,Y,X (nm), e.g. 40,4,4"
            )
        assert partners is not None  # checked with the segmentation above
        edge_df = edge_table(clefts.data, seg.data, partners, voxel_size_nm=voxel_size)
    created = _make_folder(out)
    try:
        tables = {targets[0]: cleft_df} | ({targets[1]: edge_df} if edge_df is not None else {})
        write_tables(tables, overwrite=args.overwrite)
    except BaseException:
        if created is not None:
            remove_path(created)
        raise
    print(f"wrote {targets[0]} ({_count(len(cleft_df), 'cleft')})")
    if edge_df is not None:
        print(f"wrote {targets[1]} ({_count(len(edge_df), 'edge')})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from napari_avan.core.files import atomic_path
    from napari_avan.io import read_partners, read_volume, write_cremi, write_volume

    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    seg = _read_labels(args.segmentation, "segmentation") if args.segmentation else None
    clefts = _read_labels(args.clefts, "clefts") if args.clefts else None
    _same_shape(image=image, segmentation=seg, clefts=clefts)
    voxel_size = _voxel_size_of(args.image, image, seg, clefts)
    partners = read_partners(Path(args.partners)) if args.partners else None
    out = Path(args.out)
    if args.to == "cremi":
        annotations = None
        if partners is not None:
            if seg is None or clefts is None:
                raise AvanInputError(
                    "CREMI partner annotations need --segmentation and --clefts too"
                )
            from napari_avan.core.tables import edge_table
            from napari_avan.io import cremi_annotations_from_edges

            edges = edge_table(clefts.data, seg.data, partners, voxel_size_nm=voxel_size)
            annotations = cremi_annotations_from_edges(edges, voxel_size)
        write_cremi(
            out,
            image.data,
            voxel_size,
            neuron_ids=None if seg is None else seg.data,
            clefts=None if clefts is None else clefts.data,
            annotations=annotations,
            overwrite=args.overwrite,
        )
        print(f"wrote {out}")
        return 0
    if partners is not None:
        raise AvanInputError(
            f"--partners is only stored in CREMI files; with --to {args.to} copy the CSV instead"
        )
    if args.to == "tiff":
        if seg is not None or clefts is not None:
            raise AvanInputError("a TIFF holds one volume: convert each with its own --image")
        write_volume(out, image.data, voxel_size, format="tiff", overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    _refuse_existing(out, args.overwrite)
    # OME-Zarr: the image is the multiscale at the root, labels under labels/ (NGFF);
    # plain zarr: one member per volume.
    ome = args.to == "ome-zarr"
    members = {
        None if ome else "image": image,
        "labels/segmentation" if ome else "segmentation": seg,
        "labels/clefts" if ome else "clefts": clefts,
    }
    # The whole store is built aside and renamed into place once complete.
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        for key, vol in members.items():
            if vol is not None:
                write_volume(tmp, vol.data, voxel_size, format=args.to, key=key)
    print(f"wrote {out}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_avan.core.files import atomic_path
    from napari_avan.io import read_volume, write_table, write_volume
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import iter_detect
    from napari_avan.models.device import plan

    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    vs = _voxel_size_of(args.image, image)
    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    model = resolve_model(args.model, "cleft-detector")
    run = plan(args.device)
    detection = None
    with tqdm(desc=f"detect on {run.describe()}", unit="patch", disable=args.quiet) as bar:
        for step in iter_detect(
            model,
            image.data,
            vs,
            run=run,
            threshold=args.threshold,
            min_size=args.min_size,
            join_radius_nm=args.join_radius_nm,
            flip_tta=args.tta,
        ):
            bar.total = step.total
            bar.update(step.done - bar.n)
            detection = step.result
    assert detection is not None
    # One store, renamed into place whole: an interruption never leaves part of it.
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        write_volume(tmp, detection.prob, vs, format="zarr", key="cleft_prob")
        write_volume(tmp, detection.clefts, vs, format="zarr", key="clefts")
        write_table(detection.table, tmp / "clefts.csv")
    print(f"wrote {out} ({_count(len(detection.table), 'cleft')})")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_avan.core.tables import edge_table
    from napari_avan.io import read_volume, write_table
    from napari_avan.models.assign import edge_weights, iter_assign
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan

    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    clefts = _read_labels(args.clefts, "clefts")
    seg = _read_labels(args.segmentation, "segmentation")
    _same_shape(image=image, clefts=clefts, segmentation=seg)
    voxel_size = _voxel_size_of(args.image, image, clefts, seg)
    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    model = resolve_model(args.model, args.method)
    run = plan(args.device)
    name = str(model.metadata.get("name", Path(args.model or args.method).name))
    if args.method == "proximity-pruner":
        from napari_avan.models.pruners import load_proximity

        load_proximity(model)  # a damaged detector is reported before work starts
    if args.method != "avan":
        return _assign_pruner(args, model, image.data, clefts.data, seg.data, voxel_size, run, out)
    assignments = []
    with tqdm(desc=f"assign on {run.describe()}", unit="patch", disable=args.quiet) as bar:
        for step in iter_assign(
            model,
            image.data,
            clefts.data,
            seg.data,
            voxel_size,
            run=run,
            polyadic=args.polyadic,
            pre_threshold=args.pre_threshold,
            post_threshold=args.post_threshold,
            flip_tta=args.tta,
        ):
            bar.total = step.total
            bar.update(step.done - bar.n)
            assignments.extend(step.finished)
    weights = edge_weights(assignments)
    edges = edge_table(
        clefts.data,
        seg.data,
        weights[["cleft_id", "pre_id", "post_id"]],
        voxel_size_nm=voxel_size,
        weights=weights,
        model=name,
    )
    write_table(edges, out, overwrite=args.overwrite)
    unassigned = sum(1 for a in assignments if not a.edges)
    print(
        f"wrote {out} ({_count(len(edges), 'edge')}; "
        f"{_count(unassigned, 'cleft')} without partners)"
    )
    return 0


def _assign_pruner(
    args: argparse.Namespace,
    model: Any,
    image: Any,
    clefts: Any,
    seg: Any,
    voxel_size: Any,
    run: Any,
    out: Path,
) -> int:
    """``assign --method mask-pruner|proximity-pruner``: the baselines' edges."""
    import numpy as np
    from tqdm import tqdm

    from napari_avan.core.tables import edge_table
    from napari_avan.io import write_table
    from napari_avan.models.pruners import iter_assign_pruner

    edges = None
    desc = f"{args.method} on {run.describe()}"
    with tqdm(desc=desc, unit="pair", disable=args.quiet) as bar:
        for step in iter_assign_pruner(
            model, np.asarray(image), np.asarray(clefts), np.asarray(seg), voxel_size, run=run,
            polyadic=args.polyadic, threshold=args.threshold,
        ):  # fmt: skip
            bar.total = step.total
            bar.update(step.done - bar.n)
            edges = step.edges
    assert edges is not None
    weights = edges.rename(columns={"score": "presyn_wt"}).assign(postsyn_wt=edges["score"])
    table = edge_table(
        np.asarray(clefts),
        np.asarray(seg),
        edges[["cleft_id", "pre_id", "post_id"]],
        voxel_size_nm=voxel_size,
        weights=weights,
        model=str(model.metadata.get("name", args.method)),
    )
    write_table(table, out, overwrite=args.overwrite)
    n_clefts = len(set(np.unique(np.asarray(clefts)).tolist()) - {0})
    missing = n_clefts - edges["cleft_id"].nunique()
    print(
        f"wrote {out} ({_count(len(table), 'edge')}; "
        f"{_count(missing, 'cleft')} without a candidate pair)"
    )
    return 0


#: Synthetic seeds of the training recipes; benchmarks hold out seeds from HOLDOUT_SEED on.
SYNTH_TRAIN_SEED = {False: 1000, True: 1500}
SYNTH_VAL_SEED = {False: 2000, True: 2500}
HOLDOUT_SEED = 9000


def _split(text: str) -> tuple[int, int]:
    """``y=700`` -> (axis 1, index 700)."""
    axis, _, index = text.partition("=")
    if axis not in ("z", "y", "x") or not index.isdigit() or int(index) < 1:
        raise argparse.ArgumentTypeError(f"split {text!r} must look like y=700 (axis z, y or x)")
    return ("zyx".index(axis), int(index))


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"widths {text!r} are not integers like 16,32,64") from err
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths {text!r} must be positive integers")
    return widths


def _training_groups(args: argparse.Namespace, prefix: str) -> list[tuple[Any, ...]]:
    """(name, image, segmentation, clefts, partners, voxel size) of each volume group given."""
    from napari_avan.io import read_partners, read_volume

    names = ("image", "segmentation", "clefts", "partners")
    lists = [getattr(args, f"{prefix}{n}") or [] for n in names]
    if len({len(x) for x in lists}) != 1:
        flags = ", ".join(f"--{prefix.replace('_', '-')}{n}" for n in names)
        raise AvanInputError(f"give {flags} the same number of times (one group per volume)")
    groups = []
    for spec, seg_spec, cleft_spec, partner_path in zip(*lists, strict=True):
        image = read_volume(spec, args.voxel_size, lazy=False, role="image")
        seg = _read_labels(seg_spec, "segmentation", args.voxel_size)
        clefts = _read_labels(cleft_spec, "clefts", args.voxel_size)
        _same_shape(image=image, segmentation=seg, clefts=clefts)
        voxel = _voxel_size_of(spec, image, seg, clefts)
        partners = read_partners(partner_path)
        groups.append((spec, image.data, seg.data, clefts.data, partners, voxel))
    return groups


def _synthetic_groups(count: int, polyadic: bool, first_seed: int, shape: Any) -> list:
    from napari_avan.core.synth import synthesize

    groups = []
    for seed in range(first_seed, first_seed + count):
        s = synthesize(seed=seed, shape=shape, polyadic=polyadic)
        name = f"synthetic-{'polyadic' if polyadic else 'dyadic'}-seed{seed}"
        groups.append((name, s.image, s.segmentation, s.clefts, s.partners, s.voxel_size_nm))
    return groups


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan
    from napari_avan.models.train import (
        TrainSettings,
        detector_voxel_size,
        iter_train,
        prepare_volume,
        resume_state,
    )

    out = Path(args.out)
    if args.steps is None and args.minutes is None:
        raise AvanInputError("give a training budget: --steps N, --minutes M or both")
    resume_state(out, args.resume)  # a damaged state is reported before any data is read
    train = _training_groups(args, "")
    val = _training_groups(args, "val_")
    if args.val_split is not None:
        axis, index = args.val_split
        split_train = []
        for name, *arrays, partners, voxel in train:
            if index >= arrays[0].shape[axis]:
                raise AvanInputError(
                    f"--val-split index {index} is outside {name} (size {arrays[0].shape[axis]} "
                    f"along {'zyx'[axis]})"
                )
            lo = tuple(slice(0, index) if a == axis else slice(None) for a in range(3))
            hi = tuple(slice(index, None) if a == axis else slice(None) for a in range(3))
            cut = "zyx"[axis]
            split_train.append(
                (f"{name} [{cut}<{index}]", *(x[lo] for x in arrays), partners, voxel)
            )
            val.append((f"{name} [{cut}>={index}]", *(x[hi] for x in arrays), partners, voxel))
        train = split_train
    for polyadic, n in ((False, args.synthetic), (True, args.synthetic_polyadic)):
        train += _synthetic_groups(n, polyadic, SYNTH_TRAIN_SEED[polyadic], args.synthetic_shape)
    for polyadic, n in ((False, args.val_synthetic), (True, args.val_synthetic_polyadic)):
        val += _synthetic_groups(n, polyadic, SYNTH_VAL_SEED[polyadic], args.synthetic_shape)
    if not train:
        raise AvanInputError(
            "no training data: give --image/--segmentation/--clefts/--partners or --synthetic N"
        )
    if not val:
        raise AvanInputError(
            "no validation data: give --val-image/... groups, --val-split y=INDEX or "
            "--val-synthetic N"
        )
    data_voxel = train[0][-1]
    if args.working_voxel_size:
        working = args.working_voxel_size
    elif args.init:  # fine-tuning keeps the starting model's working size
        task = "cleft-detector" if args.kind == "clefts" else args.kind
        working = tuple(resolve_model(args.init, task).metadata["voxel_size_nm"])
    else:
        working = detector_voxel_size(data_voxel) if args.kind == "clefts" else data_voxel
    settings = TrainSettings(
        args.kind,
        steps=args.steps,
        minutes=args.minutes,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        val_every=args.val_every,
        patch=args.patch,
        widths=args.widths,
        voxel_size_nm=working,
        polyadic=args.polyadic,
        target=args.target,
    )

    def prepared(groups: list) -> list:
        return [
            prepare_volume(image, seg, clefts, partners, voxel, working, name)
            for name, image, seg, clefts, partners, voxel in groups
        ]

    train_volumes, val_volumes = prepared(train), prepared(val)
    run = plan(args.device, allow_bf16=not args.no_bf16)
    recipe = {
        "command": "napari-avan " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "version": __version__,
        "device": run.describe(),
    }
    total = args.steps
    desc = f"train {args.kind} on {run.describe()}"
    last = None
    with tqdm(desc=desc, total=total, unit="step", disable=args.quiet) as bar:
        for progress in iter_train(
            settings,
            train_volumes,
            val_volumes,
            out,
            init=args.init,
            resume=args.resume,
            run=run,
            recipe=recipe,
            proximity_model=args.proximity_model,
        ):
            bar.update(progress.step - bar.n)
            shown = {"loss": f"{progress.loss:.3f}"}
            if progress.best:
                shown.update({k: f"{v:.3f}" for k, v in progress.best.items()})
            bar.set_postfix(shown, refresh=False)
            if progress.validation and not args.quiet:
                values = ", ".join(f"{k} {v:.4f}" for k, v in progress.validation.items())
                bar.write(f"step {progress.step}: {values}")
            last = progress
    assert last is not None
    best = ", ".join(f"{k} {v:.4f}" for k, v in (last.best or {}).items())
    print(f"wrote {out} after {last.step} steps in {last.elapsed_s / 60:.1f} min (best: {best})")
    return 0


def cmd_model_rehash(args: argparse.Namespace) -> int:
    from napari_avan.models.checkpoint import rehash_model

    for key, digest in rehash_model(args.folder).items():
        print(f"{args.folder}: {key} {digest}")
    return 0


# ----------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit code 2)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Find synaptic clefts in 3D EM and assign their partners (AVAN).",
        epilog="Volumes are given as PATH or PATH:KEY (zarr member, HDF5 dataset, npz key, "
        "OME-Zarr level); arrays are (z, y, x), voxel sizes Z,Y,X in nm.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        help="open the plugin on the built-in synthetic sample",
        description="Open napari with the Detect clefts and Partners docks on the built-in "
        "synthetic sample, with its predictions. Headless (no display, or --headless), it "
        "assigns the viewport, clicks the largest cleft and writes a screenshot, the sample "
        "and the tables to --out instead.",
    )
    p.add_argument("--headless", action="store_true", help="write a screenshot instead of a window")
    p.add_argument("--out", default="demo_out", help="folder for the outputs (default: demo_out)")
    p.add_argument(
        "--seed",
        type=_NON_NEGATIVE_INT,
        default=1,
        help="seed of the synthetic sample (default 1, the sample napari's File menu opens)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write a synthetic EM volume with exact ground truth")
    p.add_argument("--out", required=True, help="output zarr group, e.g. sample.zarr")
    p.add_argument(
        "--shape", type=_shape, default=(32, 256, 256), help="Z,Y,X (default 32,256,256)"
    )
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0)
    p.add_argument("--polyadic", action="store_true", help="one pre and 2-4 posts per cleft")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm (default 40,4,4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("detect", help="detect clefts with a trained cleft detector")
    p.add_argument("image", help="EM volume (volume spec)")
    p.add_argument("--out", required=True, help="output zarr group (cleft_prob, clefts, CSV)")
    p.add_argument(
        "--model",
        help="model folder (see napari-avan train) or bundled name (default: cleft-detector)",
    )
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument(
        "--threshold",
        type=_PROBABILITY,
        help="cleft probability cut, 0-1 (default: the model's, else 0.5)",
    )
    p.add_argument(
        "--min-size",
        type=_NON_NEGATIVE_INT,
        help="smallest cleft in voxels (default: the model's, else 50)",
    )
    p.add_argument(
        "--join-radius-nm",
        type=_NON_NEGATIVE,
        default=0.0,
        help="join fragments closer in-plane (nm)",
    )
    p.add_argument("--tta", action="store_true", help="average the in-plane flips")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("assign", help="assign partners to clefts (AVAN or a pruner baseline)")
    p.add_argument("image", help="EM volume (volume spec)")
    p.add_argument("--clefts", required=True, help="cleft labels (volume spec)")
    p.add_argument("--segmentation", required=True, help="neuron segmentation (volume spec)")
    p.add_argument("--out", required=True, help="edge table (CSV)")
    p.add_argument(
        "--method", choices=["avan", "mask-pruner", "proximity-pruner"], default="avan",
        help="AVAN (default) or one of the candidate-pruner baselines",
    )  # fmt: skip
    p.add_argument("--model", help="model folder or bundled name (default: the method's bundled)")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument(
        "--polyadic",
        action="store_true",
        help="all partners above the thresholds (the presynaptic side falls back to the best "
        "candidate when none passes)",
    )
    p.add_argument(
        "--pre-threshold",
        type=_PROBABILITY,
        default=None,
        help="AVAN, polyadic (default: the model's, chosen on validation data)",
    )
    p.add_argument(
        "--post-threshold",
        type=_PROBABILITY,
        default=None,
        help="AVAN, polyadic (default: the model's, chosen on validation data)",
    )
    p.add_argument("--threshold", type=_PROBABILITY, default=None,
                   help="pruners, polyadic: keep pairs with a probability >= this (default: "
                   "the model's)")  # fmt: skip
    p.add_argument("--tta", action="store_true", help="AVAN: average the in-plane flips")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser(
        "train",
        help="train a cleft detector, AVAN or a pruner baseline",
        description=(
            "Train a model on one or more volumes (each an --image/--segmentation/--clefts/"
            "--partners group) and/or synthetic volumes, validating on --val-* groups, a "
            "--val-split of the training volumes, or synthetic validation volumes. The best "
            "model is kept in --out with its training log and recipe."
        ),
    )
    p.add_argument(
        "kind", choices=["clefts", "avan", "mask-pruner", "proximity-pruner"], help="what to train"
    )
    p.add_argument("--target", choices=["mask", "proximity"], default="mask",
                   help="clefts: cleft mask (default) or signed proximity (for the proximity "
                   "pruner)")  # fmt: skip
    p.add_argument("--proximity-model", help="proximity-pruner: its signed proximity detector")
    p.add_argument("--out", required=True, help="model folder to create")
    for prefix, what in (("", "training"), ("val-", "validation")):
        p.add_argument(f"--{prefix}image", action="append", help=f"{what} EM volume spec")
        p.add_argument(f"--{prefix}segmentation", action="append", help=f"{what} segmentation")
        p.add_argument(f"--{prefix}clefts", action="append", help=f"{what} cleft labels")
        p.add_argument(f"--{prefix}partners", action="append", help=f"{what} partners CSV")
    p.add_argument("--val-split", type=_split, help="validate on the part of each training "
                   "volume from this index on, e.g. y=700 (train on y < 700)")  # fmt: skip
    n = _NON_NEGATIVE_INT
    p.add_argument("--synthetic", type=n, default=0, help="N synthetic dyadic volumes")
    p.add_argument("--synthetic-polyadic", type=n, default=0, help="N synthetic polyadic")
    p.add_argument("--val-synthetic", type=n, default=0, help="N synthetic dyadic (validation)")
    p.add_argument("--val-synthetic-polyadic", type=n, default=0, help="N polyadic (validation)")
    p.add_argument("--synthetic-shape", type=_shape, default=(32, 256, 256), metavar="Z,Y,X")
    p.add_argument("--steps", type=_COUNT, help="step budget")
    p.add_argument("--minutes", type=_POSITIVE, help="time budget (the first budget to end stops)")
    p.add_argument("--init", help="model folder or bundled name to fine-tune from")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--voxel-size", type=_voxel_size, metavar="Z,Y,X", help="of the inputs (nm)")
    p.add_argument("--working-voxel-size", type=_voxel_size, metavar="Z,Y,X",
                   help="the model's working voxel size (default: the --init model's, else "
                   "the data's; detector: in-plane coarsened to about 8 nm)")  # fmt: skip
    p.add_argument("--patch", type=_shape, metavar="Z,Y,X", help="training patch")
    p.add_argument("--widths", type=_widths, help="U-Net widths, e.g. 16,32,64,128")
    p.add_argument("--batch-size", type=_COUNT, default=1, help="patches per step (default 1)")
    p.add_argument("--lr", type=_POSITIVE, default=1e-3, help="learning rate (default 0.001)")
    p.add_argument("--val-every", type=_COUNT, default=100, help="validate every N steps")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0)
    p.add_argument("--polyadic", action="store_true", help="AVAN: rank models by polyadic F1")
    p.add_argument("--no-bf16", action="store_true", help="train and validate in fp32 only")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, argv=None)

    p = sub.add_parser("evaluate", help="metrics of clefts, assignment or the combined system")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    ev = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    q = ev.add_parser("clefts", help="object precision/recall/F1 and voxel F1 of cleft labels")
    q.add_argument("--pred", required=True, help="predicted cleft labels (volume spec)")
    q.add_argument("--truth", required=True, help="true cleft labels (volume spec)")
    q.add_argument(
        "--iou", type=_FRACTION, default=0.1, help="IoU needed for a match, 0-1 (default 0.1)"
    )
    q.add_argument("--any-overlap", action="store_true", help="match on any overlap instead")
    q = ev.add_parser("assignment", help="partner accuracy given the true clefts")
    q.add_argument("--pred", required=True, help="predicted edges or partners (CSV)")
    q.add_argument("--truth", required=True, help="true partners CSV (cleft_id,pre_id,post_id)")
    q.add_argument("--polyadic", action="store_true", help="score as polyadic edges")
    q = ev.add_parser("edges", help="combined system: detected clefts plus assignment")
    q.add_argument("--pred-clefts", required=True, help="predicted cleft labels (volume spec)")
    q.add_argument("--pred", required=True, help="predicted edge table (CSV)")
    q.add_argument("--truth-clefts", required=True, help="true cleft labels (volume spec)")
    q.add_argument("--truth", required=True, help="true partners CSV (cleft_id,pre_id,post_id)")
    for q in ev.choices.values():
        # SUPPRESS: a --json given before the subcommand is not reset by this default.
        q.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout"
        )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("model", help="manage model folders")
    mo = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = mo.add_parser(
        "rehash",
        help="record the sha256 of a trusted model folder's weights",
        description="Models load only when model.json records the sha256 of their weights. "
        "For a folder you trust whose model.json lacks it (written by hand or by an old "
        "version), this checks that each weights file holds plain tensors and records its "
        "hash. Never rehash a folder from an unknown source.",
    )
    q.add_argument("folder", help="the model folder (weights.pt, model.json)")
    q.set_defaults(func=cmd_model_rehash)

    p = sub.add_parser("tables", help="cleft table (and edge table) from label volumes")
    p.add_argument("--clefts", required=True, help="cleft labels (volume spec)")
    p.add_argument("--prob", help="cleft probability map, for the score column")
    p.add_argument("--segmentation", help="neuron segmentation, for the edge table")
    p.add_argument("--partners", help="partners CSV (cleft_id,pre_id,post_id), for the edge table")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument("--out", required=True, help="output folder for clefts.csv and edges.csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("convert", help="write volumes (and partners) in another format")
    p.add_argument("--image", required=True, help="EM volume (volume spec)")
    p.add_argument("--segmentation", help="neuron segmentation (volume spec)")
    p.add_argument("--clefts", help="cleft labels (volume spec)")
    p.add_argument("--partners", help="partners CSV (CREMI output only)")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument("--to", required=True, choices=["zarr", "zarr2", "ome-zarr", "cremi", "tiff"])
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_convert)
    return parser


def _fail(message: str) -> int:
    """Print ``message`` as one line on stderr; the exit code of bad input."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM unwinds like Ctrl-C, so that temporaries are removed on the way out.
    raise KeyboardInterrupt


#: Commands that run torch. Its import is not safe to interrupt: a KeyboardInterrupt
#: inside its native module set-up aborts the process (C++ terminate).
TORCH_COMMANDS = frozenset({"detect", "assign", "train", "model"})


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command in TORCH_COMMANDS:
            from napari_avan.core.files import interrupts_held

            with interrupts_held():  # Ctrl-C during the import is delivered right after it
                importlib.import_module("torch")
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except AvanInputError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``| head``): stop writing to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _fail("the output pipe was closed before everything was written")
    except MemoryError:
        return _fail("out of memory: give a smaller volume or crop it, or use a larger machine")
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        return _fail(f"operating system error{where}: {one_line(err)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "argv") and argv is not None:
        args.argv = list(argv)  # the command recorded beside trained weights
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if argv is None and previous is not None:
        # The work is done and reported. A signal during interpreter shutdown would only
        # kill the process (exit -2) or print a traceback after the fact.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if code == 130:
            # Interrupted, temporaries removed: skip the shutdown of whatever the interrupt
            # cut short (an import, zarr's event loop), which can end in SIGINT itself.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Bootstrapped ground-truth rounds: a proofreading session's decisions become training data,
the session's models are fine-tuned on them, and what is not reviewed is predicted again.

A round (:func:`iter_round`, then :func:`apply_round`):

1. **Data** (:func:`round_data`). Reviewed clefts are the accepted ones, those a proofreader
   added or re-seeded (not rejected since) and those whose partners a proofreader set: they
   are positives, with their partners. Rejected clefts are negatives: the detector draws
   hard negative patches around them. Everything else is of unknown truth and never trained
   on: the detector's loss ignores voxels outside the reviewed region (the reviewed clefts'
   boxes grown by half a training patch) and the voxels of pending clefts.
2. **Validation box.** Its reviewed clefts are never trained on; they choose the
   post-processing, and the round's figures are measured on them
   (predicted clefts touching a pending one there are not counted). A box given is kept
   for the next rounds; without one, each round chooses one: the band along y holding the
   last quarter of the reviewed clefts (so it grows as the review does).
3. **Training**: the detector, then AVAN, fine-tuned from the session's current models with
   :func:`napari_avan.models.train.iter_train` (``--minutes`` split 60 / 40), each saved as
   a model folder whose ``model.json`` records its provenance (session, round, counts).
   Each keeps its last weights (``keep_last``): the learning rate ends low, and a handful
   of validation clefts would pick checkpoints by chance. The detector is fine-tuned at a
   lower learning rate (:data:`FINE_TUNE_LR`): at training's default it collapsed to
   predicting nothing for most of a round on the real VNC crop.
4. **Prediction**: the new detector runs on the whole volume; pending clefts that no
   proofreader touched are replaced by the clefts found away from the reviewed ones, and
   AVAN assigns those.

Nothing in the session changes until :func:`apply_round`: closing the generator of
:func:`iter_round` (a cancelled round) removes the round's model folder and leaves the
session as it was. :func:`apply_round` applies the changes as session decisions (journaled,
undoable), writes the new probability map into the session folder, records the round in
``session.json`` (``rounds``) and makes the new models the session's current ones.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_avan.core.files import timestamp
from napari_avan.core.session import Session, assign_decision
from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size

#: The file in a round's model folder describing the round.
ROUND_FILE = "round.json"
#: Share of a round's minutes given to the detector (the rest to AVAN).
DETECTOR_SHARE = 0.6
#: Learning rate of each model's fine-tuning in a round. Measured on the VNC crop (round 3
#: of ``benchmarks/bench_bootstrap.py``, 850 steps from round 2's detector): at 1e-3 the
#: detector predicted nothing from step 100 to 600 and scored cleft F1 0.32 on y >= 700;
#: at 2e-4 its loss stayed low and it scored 0.95. AVAN learns steadily at 1e-3.
FINE_TUNE_LR = {"detector": 2e-4, "avan": 1e-3}
#: Share of the reviewed clefts an automatic validation box holds.
VALIDATION_SHARE = 0.25
#: Model folder names inside a round's folder, by the session's model key.
MODEL_FOLDERS = {"detector": "cleft-detector", "avan": "avan"}
#: The bundled models a session without recorded ones starts from.
BASE_MODELS = {"detector": "cleft-detector", "avan": "avan"}
#: Progress fractions at which each phase of a round starts.
_PHASES = {"data": 0.0, "detector": 0.03, "avan": 0.58, "predict": 0.93, "assign": 0.97}

Box = tuple[int, int, int, int, int, int]


def parse_box(text: str) -> Box:
    """``Z0,Y0,X0,Z1,Y1,X1`` (ends exclusive, voxels) as a box."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise AvanInputError(
            f"validation box {text!r} must be six integers Z0,Y0,X0,Z1,Y1,X1 (voxels)"
        )
    return check_box(values, None)


def check_box(box: Sequence[int], shape: Sequence[int] | None) -> Box:
    """A box (z0, y0, x0, z1, y1, x1) that is non-empty and, given ``shape``, inside it."""
    values = tuple(int(v) for v in box)
    if len(values) != 6 or any(values[i] >= values[i + 3] or values[i] < 0 for i in range(3)):
        raise AvanInputError(
            f"validation box {list(values)} is empty or negative: give Z0,Y0,X0,Z1,Y1,X1 with "
            "each start below its end"
        )
    if shape is not None and any(values[i + 3] > int(n) for i, n in enumerate(shape)):
        raise AvanInputError(
            f"validation box {list(values)} reaches outside the volume {tuple(shape)}"
        )
    return values


def _window(box: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(int(box[i]), int(box[i + 3])) for i in range(3))


@dataclass
class Reviewed:
    """A session's reviewed clefts by kind (each cleft in one kind, the first that fits)."""

    accepted: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    corrected: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)

    @property
    def positives(self) -> list[int]:
        return sorted(self.accepted + self.added + self.corrected)

    @property
    def negatives(self) -> list[int]:
        return sorted(self.rejected)

    def counts(self) -> dict[str, int]:
        return {
            "accepted": len(self.accepted),
            "added": len(self.added),
            "corrected": len(self.corrected),
            "rejected": len(self.rejected),
        }


def reviewed_clefts(session: Session) -> Reviewed:
    """The session's reviewed clefts: accepted, added (re-seeded or painted), partners set
    by hand (still pending), rejected. Pending clefts untouched by a proofreader are not."""
    corrected = session.decided(("set_partners",))
    out = Reviewed()
    for cleft, record in sorted(session.records.items()):
        if record.status == "rejected":
            out.rejected.append(cleft)
        elif record.status == "accepted":
            out.accepted.append(cleft)
        elif record.origin == "added":
            out.added.append(cleft)
        elif cleft in corrected:
            out.corrected.append(cleft)
    return out


def automatic_box(session: Session, reviewed: Reviewed) -> Box:
    """The band along y holding the last :data:`VALIDATION_SHARE` of the reviewed positive
    clefts (at least one), through the whole z and x range, up to the reviewed ones' end."""
    records = session.records
    positives = [c for c in reviewed.positives if records[c].box]
    if len(positives) < 2:
        raise AvanInputError(
            f"a round needs at least 2 reviewed clefts (accepted, added or corrected), found "
            f"{len(positives)}: review more clefts first"
        )
    boxes = {c: records[c].box for c in positives}
    order = sorted(positives, key=lambda c: ((boxes[c][1] + boxes[c][4]) / 2, c))
    n_val = max(1, round(VALIDATION_SHARE * len(order)))
    held = order[-n_val:]
    start = min(boxes[c][1] for c in held)
    end = max(records[c].box[4] for c in reviewed.positives + reviewed.negatives if records[c].box)
    shape = session.labels.shape
    return check_box((0, start, 0, shape[0], max(end, start + 1), shape[2]), shape)


@dataclass
class BoxTruth:
    """The validation box at the data's voxel size: volumes, reviewed clefts and partners,
    and the voxels of unknown truth (pending clefts)."""

    box: Box
    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray
    partners: pd.DataFrame
    unknown: np.ndarray


@dataclass
class RoundData:
    """What a round trains and validates on (volumes at each model's working size)."""

    detector_train: list[Any]
    detector_val: list[Any]
    avan_train: list[Any]
    avan_val: list[Any]
    truth: BoxTruth
    counts: dict[str, int]
    polyadic: bool
    avan_selected_on: str


def _partners(session: Session, clefts: Sequence[int]) -> pd.DataFrame:
    rows = [
        (c, pre, post)
        for c in clefts
        for pre in session.records[c].pre
        for post in session.records[c].post
    ]
    return pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"], dtype=np.int64)


def _grown(box: Sequence[int], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, box[i] - margin[i]), min(int(shape[i]), box[i + 3] + margin[i]))
        for i in range(3)
    )


def round_data(
    session: Session,
    image: np.ndarray,
    segmentation: np.ndarray,
    box: Box,
    detector_nm: VoxelSize,
    avan_nm: VoxelSize,
    detector_patch: Sequence[int],
) -> RoundData:
    """The training and validation volumes of a round (see the module docstring).

    Raises:
        AvanInputError: no reviewed cleft to train on outside the box, none to validate on
            inside it.
    """
    from napari_avan.models.train import prepare_volume

    labels = np.asarray(session.labels)
    shape = labels.shape
    voxel = session.voxel_size_nm
    reviewed = reviewed_clefts(session)
    records = session.records
    in_box = np.zeros(shape, bool)
    in_box[_window(box)] = True
    ids_in_box = set(np.unique(labels[in_box]).tolist()) - {0}
    ids_outside = set(np.unique(labels[~in_box]).tolist()) - {0}
    positives, negatives = reviewed.positives, reviewed.negatives
    train_pos = [c for c in positives if c not in ids_in_box]
    train_neg = [c for c in negatives if c not in ids_in_box]
    val_pos = [c for c in positives if c in ids_in_box and c not in ids_outside]
    crossing = [c for c in positives + negatives if c in ids_in_box and c in ids_outside]
    if not train_pos:
        raise AvanInputError(
            f"no reviewed cleft outside the validation box {list(box)} to train on: accept, "
            "re-seed or correct clefts outside it"
        )
    if not val_pos:
        raise AvanInputError(
            f"the validation box {list(box)} holds no reviewed cleft lying wholly inside it: "
            "review the clefts inside it (accept or re-seed them), or choose another box"
        )
    pending = np.isin(labels, [c for c, r in records.items() if c not in positives + negatives])

    # the detector: reviewed region (boxes grown by half a training patch), minus pending
    # clefts, the validation box and clefts crossing its border
    sizes = zip(detector_patch, detector_nm, voxel, strict=True)
    margin = [max(1, round(p * w / v / 2)) for p, w, v in sizes]
    region = np.zeros(shape, bool)
    for cleft in train_pos + train_neg:
        region[_grown(records[cleft].box or (0, 0, 0, *shape), margin, shape)] = True
    crossing_mask = np.isin(labels, crossing)
    unknown = ~region | pending | in_box | crossing_mask
    train_clefts = np.where(np.isin(labels, train_pos), labels, 0)
    rejected = np.isin(labels, train_neg)
    empty = _partners(session, [])
    detector_train = [
        prepare_volume(image, segmentation, train_clefts, empty, voxel, detector_nm,
                       f"{session.path.name} [reviewed]", unknown=unknown, negatives=rejected)
    ]  # fmt: skip
    window = _window(box)
    box_labels = labels[window]
    val_clefts = np.where(np.isin(box_labels, val_pos), box_labels, 0)
    val_unknown = pending[window] | crossing_mask[window]
    truth = BoxTruth(
        box,
        np.asarray(image[window]),
        np.asarray(segmentation[window]),
        val_clefts,
        _partners(session, [c for c in val_pos if records[c].pre and records[c].post]),
        val_unknown,
    )
    name = f"{session.path.name} [validation box {','.join(map(str, box))}]"
    detector_val = [
        prepare_volume(truth.image, truth.segmentation, val_clefts, truth.partners, voxel,
                       detector_nm, name, unknown=val_unknown)
    ]  # fmt: skip

    # AVAN: reviewed clefts with partners on both sides
    avan_pos = [c for c in train_pos if records[c].pre and records[c].post]
    counts = {
        **reviewed.counts(),
        "positives": len(positives),
        "negatives": len(negatives),
        "training_clefts": len(train_pos),
        "training_negatives": len(train_neg),
        "validation_clefts": len(val_pos),
        "validation_with_partners": int(truth.partners["cleft_id"].nunique()),
        "avan_training_clefts": len(avan_pos),
        "crossing_box": len(crossing),
        "unreviewed_in_box": len(set(np.unique(box_labels[pending[window]]).tolist()) - {0}),
    }
    polyadic = any(len(records[c].pre) > 1 or len(records[c].post) > 1 for c in avan_pos + val_pos)
    avan_train: list[Any] = []
    avan_val: list[Any] = []
    selected_on = "validation box"
    if avan_pos:
        avan_clefts = np.where(np.isin(labels, avan_pos), labels, 0)
        avan_train = [
            prepare_volume(image, segmentation, avan_clefts, _partners(session, avan_pos),
                           voxel, avan_nm, f"{session.path.name} [reviewed]")
        ]  # fmt: skip
        if truth.partners.empty:  # nothing in the box to choose by: the training clefts
            avan_val, selected_on = list(avan_train), "training clefts (none in the box)"
        else:
            avan_val = [
                prepare_volume(truth.image, truth.segmentation, val_clefts, truth.partners,
                               voxel, avan_nm, name)
            ]  # fmt: skip
    return RoundData(
        detector_train, detector_val, avan_train, avan_val, truth, counts, polyadic, selected_on
    )


def score_box(
    detector: Any,
    avan: Any,
    image: np.ndarray,
    segmentation: np.ndarray,
    clefts: np.ndarray,
    partners: pd.DataFrame,
    voxel_size_nm: VoxelSize,
    *,
    unknown: np.ndarray | None = None,
    run: Any = None,
) -> dict[str, Any]:
    """The figures of a detector and AVAN on one region with its truth: cleft precision,
    recall and F1 (each model's own post-processing; predicted clefts touching ``unknown``
    voxels dropped; a match needs IoU >= 0.1), and AVAN's presynaptic accuracy and polyadic
    edge F1 on the true clefts with partners (None where there are none)
    (:mod:`napari_avan.models.scoring`)."""
    from napari_avan.models.scoring import score_avan, score_detector

    det = score_detector(detector, image, clefts, voxel_size_nm, unknown=unknown, run=run)
    av = score_avan(avan, image, clefts, segmentation, partners, voxel_size_nm, run=run)
    out = {k: det[k] for k in ("cleft_f1", "cleft_precision", "cleft_recall", "cleft_tp",
                               "cleft_fp", "cleft_fn")}  # fmt: skip
    out.update({k: av[k] for k in ("pre_accuracy", "edge_f1", "assigned_clefts")})
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


@dataclass
class NewCleft:
    """A cleft the round's detector found away from the reviewed ones."""

    voxels: np.ndarray  # (n, 3) voxel indices
    score: float  # mean probability
    assignment: Any  # AVAN's CleftAssignment (cleft_id is the provisional id)


@dataclass
class RoundPlan:
    """A finished round's changes, applied to the session by :func:`apply_round`."""

    out: Path
    record: dict[str, Any]
    probability: np.ndarray
    removed: list[int]
    added: list[NewCleft]


@dataclass
class RoundProgress:
    """One step of a round: its phase (``data``, ``detector``, ``avan``, ``predict``,
    ``assign``, ``done``), the fraction of the round done, a message; during training the
    step, its loss and the validation figures when they were measured; ``plan`` on the
    last step."""

    phase: str
    fraction: float
    message: str
    step: int | None = None
    loss: float | None = None
    validation: dict[str, float] | None = None
    plan: RoundPlan | None = None


def session_models(session: Session) -> dict[str, str]:
    """The session's current models (model folders or bundled names) by key."""
    models = session.meta.get("models") or {}
    return {k: str(models.get(k) or BASE_MODELS[k]) for k in BASE_MODELS}


def iter_round(
    session: Session,
    out: str | Path,
    *,
    minutes: float | None = 10.0,
    steps: int | None = None,
    validation: Sequence[int] | None = None,
    image: np.ndarray | None = None,
    segmentation: np.ndarray | None = None,
    run: Any = None,
    seed: int = 0,
    val_every: int = 50,
) -> Iterator[RoundProgress]:
    """Run a round (see the module docstring) up to the changes it would make.

    Args:
        session: the session; nothing in it changes (apply the last step's ``plan`` with
            :func:`apply_round`).
        out: the round's folder to create (``cleft-detector/``, ``avan/`` and
            :data:`ROUND_FILE`); it must not exist. Closing the generator before the end
            removes it.
        minutes: training time of the round (detector and AVAN together).
        steps: a step budget per model (with ``minutes``: the first to end stops).
        validation: the validation box (z0, y0, x0, z1, y1, x1); default: the box given
            to an earlier round, else an automatic one.
        image, segmentation: the session's volumes (default: read from its specs).
        run: device plan; seed: training seed; val_every: validation interval in steps.

    Raises:
        AvanInputError: no volumes, too few reviewed clefts, a bad box, an existing ``out``.
    """
    from napari_avan.io.export import session_volume
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan as make_plan
    from napari_avan.models.train import DEFAULT_TRAIN_PATCH, TrainSettings, iter_train

    out = Path(out)
    if not session.in_memory:
        raise AvanInputError(
            f"{session.path} keeps its labels on disk (larger than memory), and a round "
            "trains and predicts on whole volumes: bootstrapped rounds need a session held "
            "in memory: start one on a crop of the volume for the rounds"
        )
    if out.exists():
        raise AvanInputError(f"{out} exists: choose a new folder for this round's models")
    if minutes is None and steps is None:
        raise AvanInputError("give the round a training budget: minutes, steps or both")
    started, clock = timestamp(), time.perf_counter()
    shape = session.labels.shape
    if image is None:
        image = session_volume(session, "image", "image")
    if segmentation is None:
        segmentation = session_volume(session, "segmentation", "segmentation")
    if image is None or segmentation is None:
        raise AvanInputError(
            "the session records no image or segmentation: open it with its volumes"
        )
    image, segmentation = np.asarray(image), np.asarray(segmentation)
    for what, array in (("image", image), ("segmentation", segmentation)):
        if tuple(array.shape) != tuple(shape):
            raise AvanInputError(f"the {what} has shape {array.shape}, the session {shape}")
    reviewed = reviewed_clefts(session)
    if validation is not None:
        box, chosen = check_box(validation, shape), "given"
    elif session.meta.get("validation_box"):
        box, chosen = check_box(session.meta["validation_box"], shape), "kept from the last round"
    else:
        box, chosen = automatic_box(session, reviewed), "automatic"
    base = session_models(session)
    detector0 = resolve_model(base["detector"], "cleft-detector")
    avan0 = resolve_model(base["avan"], "avan")
    detector_nm = check_voxel_size(detector0.metadata["voxel_size_nm"], what="model voxel size")
    avan_nm = check_voxel_size(avan0.metadata["voxel_size_nm"], what="model voxel size")
    yield RoundProgress("data", 0.0, f"gathering the reviewed clefts (validation box {chosen})")
    data = round_data(
        session, image, segmentation, box, detector_nm, avan_nm, DEFAULT_TRAIN_PATCH["clefts"]
    )
    run = run or make_plan()
    number = session.round + 1
    provenance = {
        "session": str(session.path.resolve()),
        "round": number,
        "decisions": len(session.entries),
        "counts": data.counts,
        "validation_box": list(box),
    }
    truth = data.truth
    voxel = session.voxel_size_nm
    base_metrics = score_box(
        detector0, avan0, truth.image, truth.segmentation, truth.clefts, truth.partners, voxel,
        unknown=truth.unknown, run=run,
    )  # fmt: skip
    finished = False
    out.mkdir(parents=True)
    try:
        trained: dict[str, Any] = {}
        budgets = {
            "detector": None if minutes is None else minutes * DETECTOR_SHARE,
            "avan": None if minutes is None else minutes * (1 - DETECTOR_SHARE),
        }
        jobs = [("detector", "clefts", data.detector_train, data.detector_val, detector_nm)]
        if data.avan_train:
            jobs.append(("avan", "avan", data.avan_train, data.avan_val, avan_nm))
        for key, kind, train, val, working in jobs:
            settings = TrainSettings(
                kind, steps=steps, minutes=budgets[key], seed=seed, val_every=val_every,
                voxel_size_nm=working, polyadic=data.polyadic and kind == "avan",
                keep_last=True, lr=FINE_TUNE_LR[key],
            )  # fmt: skip
            folder = out / MODEL_FOLDERS[key]
            start = _PHASES[key]
            span = (_PHASES["avan"] if key == "detector" else _PHASES["predict"]) - start
            last = None
            for progress in iter_train(
                settings, train, val, folder, init=base[key], run=run,
                provenance={**provenance, "base_model": base[key]},
                recipe={"bootstrap_round": number, "session": provenance["session"]},
            ):  # fmt: skip
                last = progress
                yield RoundProgress(
                    key, start + span * progress.fraction,
                    f"training the {MODEL_FOLDERS[key]}: step {progress.step}, "
                    f"loss {progress.loss:.3f}",
                    step=progress.step, loss=progress.loss, validation=progress.validation,
                )  # fmt: skip
            assert last is not None
            trained[key] = (folder, last.step, last.elapsed_s / 60)
        models = {k: str(trained[k][0]) if k in trained else base[k] for k in BASE_MODELS}
        detector = resolve_model(models["detector"], "cleft-detector")
        avan = resolve_model(models["avan"], "avan")

        yield RoundProgress("predict", _PHASES["predict"], "detecting clefts in the volume")
        plan = _predict(session, reviewed, detector, avan, image, segmentation, run)
        yield RoundProgress("assign", _PHASES["assign"], "scoring the validation box")
        metrics = score_box(
            detector, avan, truth.image, truth.segmentation, truth.clefts, truth.partners,
            voxel, unknown=truth.unknown, run=run,
        )  # fmt: skip
        record = {
            "round": number,
            "started": started,
            "finished": timestamp(),
            "out": str(out.resolve()),
            "base_models": base,
            "models": models,
            "counts": {**data.counts, "removed": len(plan.removed), "predicted": len(plan.added)},
            "steps": {k: v[1] for k, v in trained.items()},
            "minutes": {
                **{k: round(v[2], 2) for k, v in trained.items()},
                "round": round((time.perf_counter() - clock) / 60, 2),
            },
            "validation_box": list(box),
            "validation_box_chosen": chosen,
            "avan_selected_on": data.avan_selected_on if data.avan_train else "not trained",
            "polyadic": data.polyadic,
            "base_metrics": base_metrics,
            "metrics": metrics,
        }
        (out / ROUND_FILE).write_text(json.dumps(record, indent=2) + "\n")
        plan.out, plan.record = out, record
        finished = True
        yield RoundProgress("done", 1.0, _summary(record), plan=plan)
    finally:
        if not finished:  # cancelled or failed: the session never saw this round
            shutil.rmtree(out, ignore_errors=True)


def _summary(record: dict[str, Any]) -> str:
    m = record["metrics"]
    pre = "n/a" if m["pre_accuracy"] is None else f"{m['pre_accuracy']:.2f}"
    return (
        f"round {record['round']}: validation cleft F1 {m['cleft_f1']:.2f}, pre accuracy "
        f"{pre}; {record['counts']['predicted']} clefts predicted, "
        f"{record['counts']['removed']} replaced"
    )


def _predict(
    session: Session,
    reviewed: Reviewed,
    detector: Any,
    avan: Any,
    image: np.ndarray,
    segmentation: np.ndarray,
    run: Any,
) -> RoundPlan:
    """The new detector over the volume: clefts away from the reviewed ones replace the
    pending clefts no proofreader touched; AVAN assigns them."""
    from napari_avan.core.geometry import label_statistics
    from napari_avan.models.assign import iter_assign
    from napari_avan.models.detect import detect

    labels = np.asarray(session.labels)
    voxel = session.voxel_size_nm
    detection = detect(detector, image, voxel, run=run)
    kept = reviewed.positives + reviewed.negatives
    removed = sorted(c for c in session.records if c not in set(kept))
    kept_mask = np.isin(labels, kept)
    found = detection.clefts
    clash = np.setdiff1d(np.unique(found[kept_mask]), [0])
    found = np.where(np.isin(found, clash), 0, found)
    future = np.where(np.isin(labels, removed), 0, labels).astype(np.uint64)
    offset = int(max(future.max(initial=0), max(session.records, default=0)))
    future[found > 0] = found[found > 0].astype(np.uint64) + offset
    stats = label_statistics(found, detection.prob)
    new_ids = [int(i) + offset for i in stats.ids]
    assignments: dict[int, Any] = {}
    if new_ids:  # polyadic, as every assignment a session records
        for step in iter_assign(
            avan, image, future, segmentation, voxel, cleft_ids=new_ids, run=run,
            polyadic=True,
        ):  # fmt: skip
            assignments.update({int(a.cleft_id): a for a in step.finished})
    added = []
    for row, cleft in enumerate(stats.ids):
        voxels = np.argwhere(found == cleft)
        added.append(
            NewCleft(voxels, float(stats.value_mean[row]), assignments[int(cleft) + offset])
        )
    return RoundPlan(Path(), {}, detection.prob, removed, added)


def apply_round(session: Session, plan: RoundPlan) -> dict[str, Any]:
    """Apply a finished round to the session: its clefts as decisions (the pending clefts
    replaced by the ones found, assigned by the new AVAN), the new probability map, the
    round in ``session.json`` and the new models as current. Returns the round's record."""
    from napari_avan.io.volumes import write_volume

    record = plan.record
    number = int(record["round"])
    prob_name = f"cleft_prob_round{number}.zarr"
    write_volume(session.path / prob_name, plan.probability, session.voxel_size_nm,
                 overwrite=True)  # fmt: skip
    session.meta["round"] = number  # records made from here on belong to the new round
    model_name = str(record["models"]["avan"])
    ids = session.replace_predicted(
        plan.removed, [n.voxels for n in plan.added], [n.score for n in plan.added]
    )
    for new, cleft in zip(plan.added, ids, strict=True):
        decision = assign_decision(new.assignment, model=model_name)
        decision["cleft"] = cleft
        session.apply(decision)
    session.probability = plan.probability
    session.meta.setdefault("volumes", {})["prob"] = prob_name
    session.meta["models"] = {**(session.meta.get("models") or {}), **record["models"]}
    if record.get("validation_box_chosen") == "automatic":  # chosen again next round
        session.meta.pop("validation_box", None)
    else:  # a proofreader's box stays until another is given
        session.meta["validation_box"] = record["validation_box"]
    session.meta.setdefault("rounds", []).append(record)
    session.save_meta()
    return record


def run_round(session: Session, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`iter_round` to the end, then :func:`apply_round`; the round's record."""
    plan = None
    for progress in iter_round(session, out, **kwargs):
        plan = progress.plan or plan
    assert plan is not None
    return apply_round(session, plan)

"""Hostile inputs against the CLI's promise for bad input.

Every command, given damaged files, pickles posing as weights, out-of-range options,
malformed partner tables, existing or unwritable outputs, or a full disk, must exit
with code 2, print exactly one line on stderr starting ``napari-avan: error:`` (no
traceback) and leave the disk as it was: no output, no hidden temporaries beside it,
an existing output byte-identical. Valid input (a closed stdout, ``| head``) must give
the right result without a traceback.

Most cases run ``main()`` in this process (fixture ``cli``); broken pipes and the
RLIMIT_FSIZE fallback of the full-disk cases run the command as a subprocess.
Each case writes into its own ``tmp_path`` (``{w}``); the hostile inputs live in one
session folder (``{h}``, see conftest.py); ``{o}`` is the folder outputs go to.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# ----------------------------------------------------------------------------- command templates

IMG, SEG, CLF = "{h}/S.zarr:image", "{h}/S.zarr:segmentation", "{h}/S.zarr:clefts"
PARTNERS = "{h}/S.zarr/partners.csv"
FAST = "--quiet --device cpu"

DETECT = f"detect {IMG} --out {{o}}/out.zarr {FAST}"
ASSIGN = f"assign {IMG} --clefts {CLF} --segmentation {SEG} --out {{o}}/edges.csv {FAST}"
TABLES = f"tables --clefts {CLF} --segmentation {SEG} --partners {PARTNERS} --out {{o}}/tables"
CONVERT = (
    f"convert --image {IMG} --segmentation {SEG} --clefts {CLF} --to zarr --out {{o}}/out.zarr"
)
CONVERT_OME = CONVERT.replace(
    "--to zarr --out {o}/out.zarr", "--to ome-zarr --out {o}/out.ome.zarr"
)
CONVERT_CREMI = (
    f"convert --image {IMG} --segmentation {SEG} --clefts {CLF} --partners {PARTNERS} "
    "--to cremi --out {o}/out.h5"
)
CONVERT_TIFF = f"convert --image {IMG} --to tiff --out {{o}}/out.tif"
EVAL_CLEFTS = f"evaluate clefts --pred {CLF} --truth {CLF}"
EVAL_ASSIGN = f"evaluate assignment --pred {{h}}/edges.csv --truth {PARTNERS}"
EVAL_EDGES = (
    f"evaluate edges --pred-clefts {CLF} --pred {{h}}/edges.csv --truth-clefts {CLF} "
    f"--truth {PARTNERS}"
)
TRAIN = (
    f"train clefts --image {IMG} --segmentation {SEG} --clefts {CLF} --partners {PARTNERS} "
    f"--val-split y=48 --steps 2 --val-every 1 --patch 8,48,48 --widths 4,8 {FAST} "
    "--out {o}/model"
)
SYNTH = "synth --out {o}/S.zarr --shape 8,64,64 --seed 1"
SESSION = (
    f"session create {{o}}/sess --image {IMG} --segmentation {SEG} --clefts {CLF} "
    f"--edges {PARTNERS} --quiet"
)
APPLY = "session apply {w}/sess {w}/decisions.jsonl"
EXPORT = "export {w}/sess --format zarr --out {o}/export.zarr"
NPY = "--voxel-size 40,4,4"  # .npy files without a sidecar


def sub(template: str, old: str, new: str) -> str:
    """``template`` with ``old`` (which must occur) replaced by ``new``."""
    assert old in template, (old, template)
    return template.replace(old, new)


def fill(template: str, h: Path, w: Path, o: Path | None = None) -> list[str]:
    return [t.format(h=h, w=w, o=o or w) for t in template.split()]


# ----------------------------------------------------------------------------- setups


class _RunsCode:
    def __reduce__(self) -> tuple[object, ...]:
        return (print, ("PICKLE-CODE-RAN",))


def _torch_bytes(obj: object) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


STATES: dict[str, Callable[[], bytes]] = {
    "garbage": lambda: np.random.default_rng(5).integers(0, 256, 4000, np.uint8).tobytes(),
    "pickle-code": lambda: pickle.dumps({"weights": _RunsCode(), "step": 1}),
    "pickle-list": lambda: pickle.dumps({"weights": [1, 2, 3], "step": 1}),
    "torch-code": lambda: _torch_bytes({"weights": _RunsCode(), "step": 1}),
    "torch-text": lambda: _torch_bytes({"step": "three", "note": "no weights here"}),
}


def resume_from(kind: str) -> Callable[[SimpleNamespace, Path], None]:
    """An --out folder holding just a train_state.pt of ``kind``."""

    def setup(h: SimpleNamespace, w: Path) -> None:
        (w / "model").mkdir()
        (w / "model" / "train_state.pt").write_bytes(STATES[kind]())

    return setup


def existing_zarr(name: str) -> Callable[[SimpleNamespace, Path], None]:
    def setup(h: SimpleNamespace, w: Path) -> None:
        from napari_avan.io import write_volume

        write_volume(
            w / name, np.arange(32, dtype=np.uint8).reshape(2, 4, 4), (40, 4, 4), key="old"
        )

    return setup


def existing_file(name: str) -> Callable[[SimpleNamespace, Path], None]:
    def setup(h: SimpleNamespace, w: Path) -> None:
        (w / name).write_bytes(b"keep me\n")

    return setup


def with_session(*decisions: str) -> Callable[[SimpleNamespace, Path], None]:
    """A session folder ``{w}/sess`` on the hostile sample, and ``{w}/decisions.jsonl``."""

    def setup(h: SimpleNamespace, w: Path) -> None:
        from napari_avan.core.session import Session, records_from_partners
        from napari_avan.io import read_partners, read_volume

        sample = Path(h.root) / "S.zarr"
        Session.create(
            w / "sess",
            read_volume(f"{sample}:clefts", lazy=False).data,
            (40.0, 4.0, 4.0),
            records=records_from_partners(read_partners(sample / "partners.csv")),
            volumes={"image": f"{sample}:image", "segmentation": f"{sample}:segmentation"},
        )
        (w / "decisions.jsonl").write_text("".join(d + "\n" for d in decisions))

    return setup


def existing_tables(h: SimpleNamespace, w: Path) -> None:
    (w / "tables").mkdir()
    (w / "tables" / "clefts.csv").write_text("cleft_id\n1\n")


def existing_model_as(name: str) -> Callable[[SimpleNamespace, Path], None]:
    def setup(h: SimpleNamespace, w: Path) -> None:
        (w / name).mkdir()
        (w / name / "notes.txt").write_text("keep me\n")

    return setup


def with_session_and_file(name: str) -> Callable[[SimpleNamespace, Path], None]:
    def setup(h: SimpleNamespace, w: Path) -> None:
        with_session()(h, w)
        (w / name).write_bytes(b"keep me\n")

    return setup


def existing_model(h: SimpleNamespace, w: Path) -> None:
    (w / "model").mkdir()
    (w / "model" / "notes.txt").write_text("keep me\n")


# ----------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Case:
    id: str
    template: str
    setup: Callable[[SimpleNamespace, Path], None] | None = None
    needs: str | None = None  # a word the error line must contain


def C(id: str, template: str, **kw: object) -> object:
    return pytest.param(Case(id, template, **kw), id=id)  # type: ignore[arg-type]


def _models(tpl: str, kind: str) -> str:
    return "{h}/models/" + f"{tpl}-{kind}"


CASES = [
    # --- corrupt zarr chunks (each chunk file cut to half its length)
    C("detect-zarr-cut-chunk", sub(DETECT, IMG, "{h}/cut.zarr:image")),
    C("assign-zarr-cut-image-chunk", sub(ASSIGN, IMG, "{h}/cut.zarr:image")),
    C("assign-zarr-cut-segmentation-chunk", sub(ASSIGN, SEG, "{h}/cut.zarr:segmentation")),
    C("tables-zarr-cut-chunk", sub(TABLES, CLF, "{h}/cut.zarr:clefts")),
    C("convert-zarr-cut-chunk", sub(CONVERT, IMG, "{h}/cut.zarr:image")),
    C(
        "evaluate-clefts-zarr-cut-chunk",
        sub(EVAL_CLEFTS, f"--pred {CLF}", "--pred {h}/cut.zarr:clefts"),
    ),
    # --- HDF5 garbled after byte 4096, and truncated to half
    *(
        param
        for kind in ("garbled", "trunc")
        for param in (
            C(f"detect-h5-{kind}", sub(DETECT, IMG, f"{{h}}/{kind}.h5:image")),
            C(
                f"convert-h5-{kind}",
                sub(
                    sub(
                        sub(CONVERT, IMG, f"{{h}}/{kind}.h5:image"),
                        SEG,
                        f"{{h}}/{kind}.h5:segmentation",
                    ),
                    CLF,
                    f"{{h}}/{kind}.h5:clefts",
                ),
            ),
            C(
                f"evaluate-clefts-h5-{kind}",
                sub(EVAL_CLEFTS, f"--pred {CLF}", f"--pred {{h}}/{kind}.h5:clefts"),
            ),
        )
    ),
    # --- TIFF, npy, npz: truncated, garbage, pickled object arrays, odd sidecars
    C("detect-tiff-truncated", sub(DETECT, IMG, "{h}/trunc.tif")),
    C("convert-tiff-truncated", sub(CONVERT_TIFF, IMG, "{h}/trunc.tif")),
    C("detect-tiff-garbage", sub(DETECT, IMG, f"{{h}}/garbage.tif {NPY}")),
    C("convert-tiff-bad-header", sub(CONVERT_TIFF, IMG, f"{{h}}/badheader.tif {NPY}")),
    C("detect-npy-truncated", sub(DETECT, IMG, "{h}/trunc.npy")),
    C("assign-npy-garbage-clefts", sub(ASSIGN, CLF, "{h}/garbage.npy")),
    C("detect-npy-object-pickle", sub(DETECT, IMG, f"{{h}}/object.npy {NPY}")),
    C("convert-npz-truncated", sub(CONVERT_TIFF, IMG, "{h}/trunc.npz:image")),
    C("tables-npz-garbage", sub(TABLES, CLF, "{h}/garbage.npz")),
    C("detect-npz-object-pickle", sub(DETECT, IMG, "{h}/object.npz:image")),
    C("detect-npy-sidecar-not-numbers", sub(DETECT, IMG, "{h}/badsidecar.npy")),
    C("detect-npy-sidecar-scalar", sub(DETECT, IMG, "{h}/scalarsidecar.npy")),
    C("detect-npy-sidecar-broken-json", sub(DETECT, IMG, "{h}/brokensidecar.npy")),
    # --- pickles and garbage posing as weights (hashes updated to match), bad model.json
    *(
        C(f"detect-weights-{kind}", f"{DETECT} --model {_models('det', kind)}")
        for kind in ("pickle-code", "pickle-list", "torch-code", "torch-text", "garbage")
    ),
    C(
        "detect-model-no-sha",
        f"{DETECT} --model {_models('det', 'nosha')}",
        needs="napari-avan model rehash",
    ),
    C("detect-model-json-truncated", f"{DETECT} --model {_models('det', 'badjson')}"),
    C("detect-model-arch-mismatch", f"{DETECT} --model {_models('det', 'arch')}"),
    *(
        C(f"assign-weights-{kind}", f"{ASSIGN} --model {_models('avan', kind)}")
        for kind in ("pickle-code", "pickle-list", "torch-code", "torch-text", "garbage")
    ),
    C(
        "assign-model-no-sha",
        f"{ASSIGN} --model {_models('avan', 'nosha')}",
        needs="napari-avan model rehash",
    ),
    C("assign-model-json-truncated", f"{ASSIGN} --model {_models('avan', 'badjson')}"),
    *(
        C(
            f"assign-proximity-pt-{kind}",
            f"{ASSIGN} --method proximity-pruner --model {_models('prox', kind)}",
        )
        for kind in ("pickle-code", "torch-text", "garbage")
    ),
    C("train-init-pickle-code", f"{TRAIN} --init {_models('det', 'pickle-code')}"),
    # --- NaN, inf and out-of-range options (everything else valid)
    C("assign-pre-threshold-nan", f"{ASSIGN} --polyadic --pre-threshold nan"),
    C("assign-post-threshold-7", f"{ASSIGN} --polyadic --post-threshold 7"),
    C("assign-threshold-minus-1", f"{ASSIGN} --method mask-pruner --polyadic --threshold -1"),
    C("assign-threshold-nan", f"{ASSIGN} --method mask-pruner --polyadic --threshold nan"),
    C("assign-voxel-size-inf", f"{ASSIGN} --voxel-size inf,4,4"),
    C("detect-threshold-1.5", f"{DETECT} --threshold 1.5"),
    C("detect-threshold-nan", f"{DETECT} --threshold nan"),
    C("detect-min-size-minus-1", f"{DETECT} --min-size -1"),
    C("detect-join-radius-minus-3", f"{DETECT} --join-radius-nm -3"),
    C("detect-join-radius-inf", f"{DETECT} --join-radius-nm inf"),
    C("detect-voxel-size-0", f"{DETECT} --voxel-size 0,4,4"),
    C("detect-voxel-size-nan", f"{DETECT} --voxel-size nan,4,4"),
    *(C(f"train-lr-{v}", f"{TRAIN} --lr {v}") for v in ("nan", "0", "-1", "inf")),
    C("train-steps-0", sub(TRAIN, "--steps 2", "--steps 0")),
    C("train-minutes-nan", f"{TRAIN} --minutes nan"),
    C("train-batch-size-0", f"{TRAIN} --batch-size 0"),
    C("train-val-every-0", sub(TRAIN, "--val-every 1", "--val-every 0")),
    *(C(f"evaluate-clefts-iou-{v}", f"{EVAL_CLEFTS} --iou {v}") for v in ("0", "2", "nan")),
    C("synth-shape-0", sub(SYNTH, "8,64,64", "0,1,1")),
    C("synth-voxel-size-nan", f"{SYNTH} --voxel-size nan,4,4"),
    # --- train --resume from a damaged or pickled train_state.pt
    *(
        C(f"train-resume-state-{kind}", f"{TRAIN} --resume", setup=resume_from(kind))
        for kind in STATES
    ),
    # --- existing outputs without --overwrite
    C("detect-existing-out", DETECT, setup=existing_zarr("out.zarr")),
    C("convert-zarr-existing-out", CONVERT, setup=existing_zarr("out.zarr")),
    C("convert-tiff-existing-out", CONVERT_TIFF, setup=existing_file("out.tif")),
    C("convert-cremi-existing-out", CONVERT_CREMI, setup=existing_file("out.h5")),
    C(
        "tables-out-is-existing-file",
        sub(TABLES, "{o}/tables", "{o}/file.txt"),
        setup=existing_file("file.txt"),
    ),
    C("tables-existing-clefts-csv", TABLES, setup=existing_tables),
    C("assign-existing-out", ASSIGN, setup=existing_file("edges.csv")),
    C("synth-existing-out", SYNTH, setup=existing_zarr("S.zarr")),
    C("train-existing-out", TRAIN, setup=existing_model),
    # --- partner tables: duplicate rows, malformed rows
    C("tables-partners-duplicate", sub(TABLES, PARTNERS, "{h}/dup.csv")),
    C("convert-cremi-partners-duplicate", sub(CONVERT_CREMI, PARTNERS, "{h}/dup.csv")),
    C("evaluate-assignment-truth-duplicate", sub(EVAL_ASSIGN, PARTNERS, "{h}/dup.csv")),
    C("evaluate-edges-truth-duplicate", sub(EVAL_EDGES, PARTNERS, "{h}/dup.csv")),
    C("train-partners-duplicate", sub(TRAIN, PARTNERS, "{h}/dup.csv")),
    *(
        C(f"tables-partners-{name}", sub(TABLES, PARTNERS, f"{{h}}/{name}.csv"))
        for name in ("nonint", "floatid", "negative", "missingcol", "empty")
    ),
    C("evaluate-assignment-pred-binary", sub(EVAL_ASSIGN, "{h}/edges.csv", "{h}/binary.csv")),
    # --- wrong dimensionality, dtype, shape
    C("detect-image-2d", sub(DETECT, IMG, f"{{h}}/image2d.npy {NPY}")),
    C("detect-image-empty", sub(DETECT, IMG, f"{{h}}/empty.npy {NPY}")),
    C("detect-image-complex", sub(DETECT, IMG, f"{{h}}/complex.npy {NPY}")),
    C("assign-segmentation-float", sub(ASSIGN, SEG, "{h}/seg_float.npy")),
    C("assign-clefts-other-shape", sub(ASSIGN, CLF, "{h}/clefts_small.npy")),
    C("convert-clefts-other-shape", sub(CONVERT, CLF, "{h}/clefts_small.npy")),
    C("convert-segmentation-float", sub(CONVERT, SEG, "{h}/seg_float.npy")),
    C("tables-clefts-float", sub(TABLES, CLF, f"{{h}}/seg_float.npy {NPY}")),
    C("tables-segmentation-other-shape", sub(TABLES, SEG, "{h}/clefts_small.npy")),
    C("tables-prob-other-shape", f"{TABLES} --prob {{h}}/prob_small.npy"),
    C("tables-clefts-negative-ids", sub(TABLES, CLF, f"{{h}}/clefts_negative.npy {NPY}")),
    C(
        "evaluate-clefts-other-shape",
        sub(EVAL_CLEFTS, f"--truth {CLF}", "--truth {h}/clefts_small.npy"),
    ),
    C("evaluate-clefts-float-pred", sub(EVAL_CLEFTS, f"--pred {CLF}", "--pred {h}/seg_float.npy")),
    # --- proofreading sessions and their export
    C("session-create-zarr-cut-chunk", sub(SESSION, CLF, "{h}/cut.zarr:clefts")),
    C("session-create-edges-duplicate", sub(SESSION, PARTNERS, "{h}/dup.csv")),
    C("session-create-clefts-other-shape", sub(SESSION, CLF, "{h}/clefts_small.npy")),
    C("session-create-existing", SESSION, setup=existing_model_as("sess")),
    C("session-apply-unknown-action", APPLY, setup=with_session('{"action": "explode"}')),
    C("session-apply-not-json", APPLY, setup=with_session('{"action": "accept",')),
    C(
        "session-apply-unknown-cleft",
        APPLY,
        setup=with_session('{"action": "accept", "cleft": 999}'),
    ),
    C("session-apply-nothing-to-undo", APPLY, setup=with_session('{"action": "undo"}')),
    C(
        "session-apply-reseed-outside",
        APPLY,
        setup=with_session('{"action": "reseed", "voxels": [[99, 0, 0]]}'),
    ),
    C("export-existing-out", EXPORT, setup=with_session_and_file("export.zarr")),
    C("export-no-session", sub(EXPORT, "{w}/sess", "{w}/nothing")),
]


def _problems(
    contract: SimpleNamespace, result: object, watched: Path, before: dict, needs: str | None
) -> list[str]:
    problems = contract.refusal_problems(result, watched, before, needs=needs)
    if "PICKLE-CODE-RAN" in result.out + result.err:  # type: ignore[attr-defined]
        problems.insert(0, "RAN THE PICKLED CODE")
    return problems


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused(
    case: Case, hostile: SimpleNamespace, cli: Callable, contract: SimpleNamespace, tmp_path: Path
) -> None:
    if case.setup is not None:
        case.setup(hostile, tmp_path)
    before = contract.snapshot(tmp_path)
    result = cli(fill(case.template, hostile.root, tmp_path))
    problems = _problems(contract, result, tmp_path, before, case.needs)
    assert not problems, "; ".join(problems)


# ----------------------------------------------------------------------------- valid baselines


def _check_zarr(path: Path, keys: set[str]) -> None:
    from napari_avan.io import list_keys, read_volume

    found = set(list_keys(path))
    assert keys <= found, (keys, found)
    assert not [k for k in found if k.split("/")[-1].startswith(".")], found
    for key in keys:
        assert read_volume(f"{path}:{key}", lazy=False).shape == (8, 96, 96)


BASELINES = [
    pytest.param(
        DETECT, lambda w: _check_zarr(w / "out.zarr", {"cleft_prob", "clefts"}), id="detect"
    ),
    pytest.param(ASSIGN, lambda w: (w / "edges.csv").is_file(), id="assign-avan"),
    pytest.param(
        f"{ASSIGN} --method proximity-pruner",
        lambda w: (w / "edges.csv").is_file(),
        id="assign-proximity-pruner",
    ),
    pytest.param(TABLES, lambda w: (w / "tables" / "edges.csv").is_file(), id="tables"),
    pytest.param(
        CONVERT,
        lambda w: _check_zarr(w / "out.zarr", {"image", "segmentation", "clefts"}),
        id="convert-zarr",
    ),
    pytest.param(CONVERT_CREMI, lambda w: (w / "out.h5").is_file(), id="convert-cremi"),
    pytest.param(EVAL_CLEFTS + " --json", lambda w: None, id="evaluate-clefts"),
    pytest.param(EVAL_ASSIGN, lambda w: None, id="evaluate-assignment"),
    pytest.param(EVAL_EDGES, lambda w: None, id="evaluate-edges"),
    pytest.param(TRAIN, lambda w: (w / "model" / "weights.pt").is_file(), id="train"),
    pytest.param(SYNTH, lambda w: (w / "S.zarr" / "partners.csv").is_file(), id="synth"),
    pytest.param(SESSION, lambda w: (w / "sess" / "journal.jsonl").is_file(), id="session"),
]


@pytest.mark.parametrize(("template", "check"), BASELINES)
def test_valid_baseline_succeeds(
    template: str, check: Callable, hostile: SimpleNamespace, cli: Callable, tmp_path: Path
) -> None:
    """The unharmed form of the commands above works: the refusals are the hostile part's."""
    result = cli(fill(template, hostile.root, tmp_path))
    assert result.crash() is None, result.crash()
    assert result.rc == 0, result.err
    assert "Traceback" not in result.err
    assert check(tmp_path) is not False
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not hidden, f"left {hidden}"


# ----------------------------------------------------------------------------- unwritable outputs

#: Each command with an output; the output goes into ``{o}``.
OUTPUTS = {
    "detect": DETECT,
    "convert": CONVERT,
    "tables": TABLES,
    "assign": ASSIGN,
    "synth": SYNTH,
    "train": TRAIN,
    "session": SESSION,
}


@pytest.mark.parametrize("technique", ["read-only-mount", "parent-is-a-file"])
@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_unwritable_output_is_refused(
    command: str,
    technique: str,
    hostile: SimpleNamespace,
    cli: Callable,
    contract: SimpleNamespace,
    tmp_path: Path,
    tmpfs: Callable,
    mount_works: bool,
) -> None:
    if technique == "read-only-mount":
        if not mount_works:
            pytest.skip("mount is not permitted here (root's chmod does not stop writes)")
        out_dir = tmpfs("ro", "size=1m,ro")
    else:
        (tmp_path / "file.txt").write_text("a regular file, not a folder\n")
        out_dir = tmp_path / "file.txt"
    before = contract.snapshot(tmp_path)
    result = cli(fill(OUTPUTS[command], hostile.root, tmp_path, out_dir))
    problems = _problems(contract, result, tmp_path, before, None)
    assert not problems, "; ".join(problems)


# ----------------------------------------------------------------------------- full disk

FULL_DISK = {
    "detect": DETECT,
    "convert-zarr": CONVERT,
    "convert-ome-zarr": CONVERT_OME,
    "convert-cremi": CONVERT_CREMI,
    "convert-tiff": CONVERT_TIFF,
    "tables": TABLES,
    "assign": ASSIGN,
    "synth": SYNTH,
    "train": TRAIN,
    "session": SESSION,
}
#: Commands whose output is several pages, tried with 16 KiB left too (writes fail midway).
PARTLY = ("detect", "convert-zarr", "convert-ome-zarr", "convert-tiff", "synth", "train")
FREE = {"full": 0, "16k-left": 16 * 1024}


def _limited(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return preexec


def _subprocess_result(
    contract: SimpleNamespace, args: list[str], cwd: Path, **kw: object
) -> object:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "napari_avan.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        **kw,  # type: ignore[arg-type]
    )
    return contract.Result(run.returncode, run.stdout, run.stderr)


@pytest.mark.parametrize(
    ("command", "free"),
    [(c, "full") for c in FULL_DISK] + [(c, "16k-left") for c in PARTLY],
)
def test_full_disk_is_refused(
    command: str,
    free: str,
    hostile: SimpleNamespace,
    cli: Callable,
    contract: SimpleNamespace,
    tmp_path: Path,
    tmpfs: Callable,
    mount_works: bool,
    fill_disk: Callable,
) -> None:
    """A 1 MB tmpfs filled with a ballast file (else: RLIMIT_FSIZE in a subprocess)."""
    if mount_works:
        disk = tmpfs("disk", "size=1m")
        fill_disk(disk, FREE[free])
        before = contract.snapshot(disk)
        result = cli(fill(FULL_DISK[command], hostile.root, tmp_path, disk))
        words = ("space",)
        watched = disk
    else:
        watched = tmp_path
        before = contract.snapshot(tmp_path)
        limit = FREE[free] // 4  # per-file size limit: small files may fit, big ones fail
        result = _subprocess_result(
            contract,
            fill(FULL_DISK[command], hostile.root, tmp_path, tmp_path),
            tmp_path.parent,
            preexec_fn=_limited(limit),
        )
        words = ("space", "too large")
        if free != "full" and result.rc == 0:  # nothing reached the limit: a valid run
            return
    problems = _problems(contract, result, watched, before, None)
    lines = result.err_lines
    if len(lines) == 1 and not any(w in lines[0].lower() for w in words):
        problems.append(f"message mentions neither of {words}: {lines[0][:140]!r}")
    assert not problems, "; ".join(problems)


# ----------------------------------------------------------------------------- usage papercuts


def test_json_flag_before_the_subcommand(
    hostile: SimpleNamespace, cli: Callable, tmp_path: Path
) -> None:
    """``evaluate --json clefts ...`` prints JSON, like ``evaluate clefts --json ...``."""
    args = fill(
        sub(EVAL_CLEFTS, "evaluate clefts", "evaluate --json clefts"), hostile.root, tmp_path
    )
    result = cli(args)
    assert result.rc == 0 and result.crash() is None, result.err
    try:
        metrics = json.loads(result.out)
    except ValueError:
        pytest.fail(f"stdout is not JSON: {result.out[:80]!r}")
    assert isinstance(metrics, dict) and metrics


def test_json_flag_after_the_subcommand(
    hostile: SimpleNamespace, cli: Callable, tmp_path: Path
) -> None:
    result = cli(fill(f"{EVAL_CLEFTS} --json", hostile.root, tmp_path))
    assert result.rc == 0 and result.crash() is None, result.err
    assert isinstance(json.loads(result.out), dict)


def _closed_stdout(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout a pipe whose reader has gone (every write: EPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "napari_avan.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            timeout=180,
        )
    finally:
        os.close(write_end)


def _pipe_problems(stderr: str) -> list[str]:
    problems = []
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        problems.append("'Traceback' in stderr")
    if "BrokenPipeError" in stderr or "Exception ignored" in stderr:
        problems.append("BrokenPipeError reported on stderr")
    if len(lines) > 1:
        problems.append(f"{len(lines)} stderr lines: {lines[0][:80]!r}")
    return problems


@pytest.mark.parametrize("where", ["before", "after"])
def test_broken_pipe_evaluate_json(where: str, hostile: SimpleNamespace, tmp_path: Path) -> None:
    template = (
        sub(EVAL_CLEFTS, "evaluate clefts", "evaluate --json clefts")
        if where == "before"
        else f"{EVAL_CLEFTS} --json"
    )
    run = _closed_stdout(fill(template, hostile.root, tmp_path), tmp_path)
    problems = _pipe_problems(run.stderr)
    assert not problems, "; ".join(problems) + f" (exit {run.returncode})"


def test_broken_pipe_synth_still_writes(hostile: SimpleNamespace, tmp_path: Path) -> None:
    """A closed stdout only loses the summary line: the sample is complete."""
    from napari_avan.io import list_keys, read_volume

    run = _closed_stdout(fill(SYNTH, hostile.root, tmp_path), tmp_path.parent)
    problems = _pipe_problems(run.stderr)
    out = tmp_path / "S.zarr"
    if not out.is_dir():
        problems.append("no output written")
    else:
        keys = set(list_keys(out))
        if not {"image", "segmentation", "clefts"} <= keys:
            problems.append(f"output lacks members: {sorted(keys)}")
        elif read_volume(f"{out}:clefts", lazy=False).shape != (8, 64, 64):
            problems.append("clefts have the wrong shape")
        if not (out / "partners.csv").is_file():
            problems.append("no partners.csv")
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    if hidden:
        problems.append(f"left {hidden}")
    assert not problems, "; ".join(problems) + f" (exit {run.returncode})"


def test_pipe_into_head(hostile: SimpleNamespace, tmp_path: Path) -> None:
    """``napari-avan evaluate --json clefts ... | head -2``: two lines of JSON, no traceback."""
    args = fill(
        sub(EVAL_CLEFTS, "evaluate clefts", "evaluate --json clefts"), hostile.root, tmp_path
    )
    cmd = " ".join([sys.executable, "-m", "napari_avan.cli", *args]) + " | head -2"
    run = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, cwd=tmp_path, timeout=180
    )
    problems = _pipe_problems(run.stderr)
    lines = run.stdout.splitlines()
    if len(lines) != 2 or lines[0].strip() != "{" or not re.match(r'\s+"\w+": ', lines[1]):
        problems.append(f"stdout is not the head of a JSON object: {run.stdout[:80]!r}")
    assert not problems, "; ".join(problems)

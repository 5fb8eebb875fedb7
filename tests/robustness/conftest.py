"""Fixtures of the robustness suite: hostile inputs built from one small synthetic sample,
an in-process CLI runner, the "refused cleanly" contract check and tmpfs mounts.

The contract (docs/architecture.md, the command-line contract): on bad input every command
exits with code 2, prints exactly one line on stderr starting ``napari-avan: error:`` (no
traceback), and changes nothing on disk: no output, no hidden temporaries beside it, an
existing output kept byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

PREFIX = "napari-avan: error:"
#: Seconds one in-process command may run before it counts as hung.
CASE_TIMEOUT_S = 60
#: Set to 1 to test the RLIMIT_FSIZE fallback of the full-disk cases where mount works.
NO_MOUNT_ENV = "NAPARI_AVAN_TEST_NO_MOUNT"


# ----------------------------------------------------------------------------- small helpers


def cut_in_half(path: Path) -> None:
    """Truncate a file to half its length."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_after(path: Path, offset: int) -> None:
    """Invert every byte of a file from ``offset`` on."""
    data = bytearray(path.read_bytes())
    assert len(data) > offset, f"{path} is too small ({len(data)} bytes) to garble"
    for i in range(offset, len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RunsCode:
    """Pickles to a call of print: loading it with full unpickling runs code."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("PICKLE-CODE-RAN",))


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: dirs, links, files with size and sha256."""
    entries: dict[str, tuple[Any, ...]] = {}
    if not root.exists():
        return entries
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            p = base / name
            rel = str(p.relative_to(root))
            entries[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("dir",)
        for name in filenames:
            p = base / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                entries[rel] = ("link", os.readlink(p))
            else:
                entries[rel] = ("file", p.stat().st_size, sha256_of(p))
    return entries


def snapshot_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Problems between two snapshots, top-most added/removed paths only."""

    def top(paths: set[str]) -> list[str]:
        return sorted(p for p in paths if not any(p.startswith(q + "/") for q in paths))

    problems = []
    added = top(set(after) - set(before))
    hidden = [p for p in added if Path(p).name.startswith(".")]
    shown = [p for p in added if p not in hidden]
    if hidden:
        problems.append(f"left {', '.join(hidden[:3])} (hidden temporaries)")
    if shown:
        problems.append(f"wrote {', '.join(shown[:3])}")
    removed = top(set(before) - set(after))
    if removed:
        problems.append(f"removed {', '.join(removed[:3])}")
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    if changed:
        problems.append(f"changed {', '.join(changed[:3])}")
    return problems


# ----------------------------------------------------------------------------- in-process runner


class CaseTimeout(BaseException):
    """Raised by SIGALRM in a hung command (not an Exception, so nothing swallows it)."""


@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    exc: BaseException | None = None
    warned: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def crash(self) -> str | None:
        """``traceback: Type: message`` for an exception that escaped main()."""
        if self.exc is None:
            return None
        if isinstance(self.exc, CaseTimeout):
            return f"hung for more than {CASE_TIMEOUT_S} s"
        first = (str(self.exc).strip().splitlines() or [""])[0][:150]
        return f"traceback: {type(self.exc).__name__}: {first}"


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


def _python_default_warning_filters() -> None:
    """What a plain ``python`` process shows: all warnings but the deprecation kinds."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)


class _Records(logging.Handler):
    """Log records of WARNING and up: what a bare process's last-resort handler prints."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().splitlines()[0][:120] if record.getMessage() else ""
        self.lines.append(f"{record.name} {record.levelname}: {message}")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``main(argv)`` in this process; exceptions and warnings are recorded, not raised.

    Warnings and log records (WARNING and up) count as stderr output: the real command
    would print them there (pytest's own capture would hide them otherwise).
    """
    from napari_avan.cli import main

    def run(argv: Sequence[str], timeout: int = CASE_TIMEOUT_S) -> Result:
        capsys.readouterr()
        argv = [str(a) for a in argv]
        rc: int | None = None
        exc: BaseException | None = None
        records = _Records()
        logging.getLogger().addHandler(records)
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(timeout)
        with warnings.catch_warnings(record=True) as caught:
            _python_default_warning_filters()
            try:
                rc = main(argv)
            except SystemExit as stop:  # argparse usage errors
                code = stop.code
                rc = code if isinstance(code, int) else (0 if code is None else 1)
                if isinstance(code, str):
                    print(code, file=__import__("sys").stderr)
            except BaseException as err:
                exc = err
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
                logging.getLogger().removeHandler(records)
        captured = capsys.readouterr()
        warned = [f"{w.category.__name__}: {str(w.message).splitlines()[0][:120]}" for w in caught]
        return Result(rc, captured.out, captured.err, exc, warned, records.lines)

    return run


def refusal_problems(
    result: Result, watched: Path, before: dict[str, Any], *, needs: str | None = None
) -> list[str]:
    """What ``result`` did against the contract for bad input (empty: refused cleanly)."""
    problems = []
    crash = result.crash()
    if crash:
        problems.append(crash)
    if result.rc != 2 and result.exc is None:
        problems.append(f"exit {result.rc}")
    if "Traceback" in result.err:
        problems.append("'Traceback' in stderr")
    lines = result.err_lines
    if result.warned:
        problems.append(f"warning on stderr: {result.warned[0]}")
    if result.logged:
        problems.append(f"log on stderr: {result.logged[0]}")
    if result.exc is None:
        if len(lines) != 1:
            shown = f": {lines[0][:100]!r}" if lines else ""
            problems.append(f"{len(lines)} stderr lines{shown}")
        elif not lines[0].startswith(PREFIX):
            problems.append(f"stderr line does not start {PREFIX!r}: {lines[0][:80]!r}")
        elif needs is not None and needs.lower() not in lines[0].lower():
            problems.append(f"message lacks {needs!r}: {lines[0][:140]!r}")
    problems += snapshot_diff(before, snapshot(watched))
    return problems


@pytest.fixture(scope="session")
def contract() -> SimpleNamespace:
    """The contract checks, for test modules (conftest is not importable by name)."""
    return SimpleNamespace(
        PREFIX=PREFIX,
        snapshot=snapshot,
        snapshot_diff=snapshot_diff,
        refusal_problems=refusal_problems,
        Result=Result,
    )


# ----------------------------------------------------------------------------- mounts


def _mount(target: Path, options: str) -> bool:
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    return run.returncode == 0


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture(scope="session")
def mount_works(tmp_path_factory: pytest.TempPathFactory) -> bool:
    """Whether this process may mount a tmpfs (checked once)."""
    if os.environ.get(NO_MOUNT_ENV) == "1" or shutil.which("mount") is None:
        return False
    probe = tmp_path_factory.mktemp("mount-probe")
    if not _mount(probe, "size=64k"):
        return False
    _umount(probe)
    return True


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``mount(name, options)``: a fresh tmpfs under tmp_path; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        if not _mount(target, options):
            pytest.fail(f"mount -t tmpfs -o {options} failed at {target}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        _umount(target)


def fill_up(folder: Path, free: int) -> Path:
    """Fill the file system of ``folder`` with a ballast file, leaving ``free`` bytes."""
    ballast = folder / "ballast.bin"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    block = b"\xa5" * 4096
    try:
        while True:
            try:
                if os.write(fd, block) == 0:
                    break
            except OSError:
                break
        if free:
            size = os.fstat(fd).st_size
            os.ftruncate(fd, max(0, size - free))
    finally:
        os.close(fd)
    return ballast


@pytest.fixture(scope="session")
def fill_disk() -> Callable[[Path, int], Path]:
    return fill_up


# ----------------------------------------------------------------------------- hostile inputs

SHAPE = (8, 96, 96)
VOXEL = (40.0, 4.0, 4.0)


def _model_copy(src: Path, dst: Path, files: Sequence[str] = ("model.json",)) -> Path:
    dst.mkdir(parents=True)
    for name in files:
        shutil.copy2(src / name, dst / name)
    return dst


def _set_weights(folder: Path, content: bytes, *, key: str = "weights_sha256",
                 file: str = "weights.pt") -> None:  # fmt: skip
    """Replace a weights file and record its new hash in model.json (a consistent fake)."""
    (folder / file).write_bytes(content)
    meta = json.loads((folder / "model.json").read_text())
    meta[key] = hashlib.sha256(content).hexdigest()
    (folder / "model.json").write_text(json.dumps(meta, indent=2))


def _torch_bytes(obj: Any) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _build_models(root: Path) -> None:
    from napari_avan.models.checkpoint import BUNDLED_DIR

    det, avan, prox = (BUNDLED_DIR / n for n in ("cleft-detector", "avan", "proximity-pruner"))
    code_pickle = pickle.dumps({"conv.weight": RunsCode()})
    list_pickle = pickle.dumps({"conv.weight": [1.0, 2.0, 3.0]})
    torch_code = _torch_bytes({"conv.weight": RunsCode()})
    torch_text = _torch_bytes({"conv.weight": "not a tensor", "step": 3})
    rng = np.random.default_rng(7)
    garbage = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    for tag, src in (("det", det), ("avan", avan)):
        for kind, content in (
            ("pickle-code", code_pickle),
            ("pickle-list", list_pickle),
            ("torch-code", torch_code),
            ("torch-text", torch_text),
            ("garbage", garbage),
        ):
            _set_weights(_model_copy(src, root / f"{tag}-{kind}"), content)
        # Real weights, but model.json without weights_sha256: must be refused.
        nosha = _model_copy(src, root / f"{tag}-nosha", ("model.json", "weights.pt"))
        meta = json.loads((nosha / "model.json").read_text())
        del meta["weights_sha256"]
        (nosha / "model.json").write_text(json.dumps(meta, indent=2))
        # Truncated JSON.
        badjson = _model_copy(src, root / f"{tag}-badjson", ("model.json", "weights.pt"))
        cut_in_half(badjson / "model.json")
    # Real weights, an architecture they do not fit (widths changed).
    arch = _model_copy(det, root / "det-arch", ("model.json", "weights.pt"))
    meta = json.loads((arch / "model.json").read_text())
    meta["architecture"]["config"]["widths"] = [8, 16]
    (arch / "model.json").write_text(json.dumps(meta, indent=2))
    # Proximity pruners whose proximity detector is a pickle (hash recorded).
    files = [p.name for p in prox.iterdir() if p.is_file()]
    for kind, content in (("pickle-code", code_pickle), ("torch-text", torch_text),
                          ("garbage", garbage)):  # fmt: skip
        copy = _model_copy(prox, root / f"prox-{kind}", files)
        _set_weights(copy, content, key="proximity_sha256", file="proximity.pt")


def _write_partners(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """All hostile inputs, made once from one 8x96x96 synthetic sample (seed 3).

    Paths (``h`` = this folder): ``S.zarr`` (the good sample: image, segmentation,
    clefts, partners.csv), ``S.h5``, and the damaged or odd files named below.
    """
    import pandas as pd

    from napari_avan.core.synth import synthesize
    from napari_avan.core.tables import edge_table
    from napari_avan.io import write_sample, write_table, write_volume

    h = tmp_path_factory.mktemp("hostile")
    sample = synthesize(seed=3, shape=SHAPE)
    write_sample(h / "S.zarr", sample)
    image, seg, clefts = sample.image, sample.segmentation, sample.clefts
    partners = pd.read_csv(h / "S.zarr" / "partners.csv")
    assert len(partners) >= 2, "the synthetic sample needs at least two partner rows"

    # Zarr v3 with every chunk file cut to half its length.
    shutil.copytree(h / "S.zarr", h / "cut.zarr")
    chunks = [p for p in (h / "cut.zarr").rglob("*") if p.is_file() and "/c/" in str(p)]
    assert {p.relative_to(h / "cut.zarr").parts[0] for p in chunks} == {
        "image", "segmentation", "clefts"
    }, chunks  # fmt: skip
    for chunk in chunks:
        cut_in_half(chunk)

    # HDF5: good, garbled after 4096 bytes, truncated to half.
    for key, data in (("image", image), ("segmentation", seg), ("clefts", clefts)):
        write_volume(h / "S.h5", data, VOXEL, key=key, format="hdf5")
    shutil.copy(h / "S.h5", h / "garbled.h5")
    flip_after(h / "garbled.h5", 4096)
    shutil.copy(h / "S.h5", h / "trunc.h5")
    cut_in_half(h / "trunc.h5")

    rng = np.random.default_rng(11)
    garbage = rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    # TIFF: truncated, pure garbage, a TIFF header followed by garbage.
    write_volume(h / "trunc.tif", image, VOXEL, format="tiff")
    cut_in_half(h / "trunc.tif")
    (h / "garbage.tif").write_bytes(garbage)
    (h / "badheader.tif").write_bytes(b"II*\x00" + (8).to_bytes(4, "little") + garbage)
    # npy / npz: truncated, garbage, object arrays (pickles), odd sidecars.
    write_volume(h / "trunc.npy", image, VOXEL, format="npy")
    cut_in_half(h / "trunc.npy")
    (h / "garbage.npy").write_bytes(garbage)
    objects = np.empty((2, 2, 2), dtype=object)
    objects[...] = RunsCode()
    np.save(h / "object.npy", objects, allow_pickle=True)
    write_volume(h / "trunc.npz", image, VOXEL, format="npz", key="image")
    cut_in_half(h / "trunc.npz")
    (h / "garbage.npz").write_bytes(garbage)
    np.savez(h / "object.npz", image=objects, voxel_size_nm=np.asarray(VOXEL))
    np.save(h / "badsidecar.npy", image)
    (h / "badsidecar.npy.json").write_text('{"voxel_size_nm": ["forty", "four", "four"]}')
    np.save(h / "scalarsidecar.npy", image)
    (h / "scalarsidecar.npy.json").write_text('{"voxel_size_nm": 4}')
    np.save(h / "brokensidecar.npy", image)
    (h / "brokensidecar.npy.json").write_text('{"voxel_size_nm": [40, 4,')

    # Wrong dimensionality, dtype, shape (no sidecars: commands pass --voxel-size).
    np.save(h / "image2d.npy", image[0])
    np.save(h / "empty.npy", np.zeros((0, 96, 96), np.uint8))
    np.save(h / "complex.npy", image.astype(np.complex64))
    np.save(h / "seg_float.npy", seg.astype(np.float32))
    np.save(h / "clefts_small.npy", clefts[:, :48, :48])
    np.save(h / "prob_small.npy", np.zeros((8, 48, 48), np.float32))
    negative = clefts.astype(np.int32)
    negative[negative > 0] *= -1
    np.save(h / "clefts_negative.npy", negative)

    # Partner tables: duplicates and malformed rows.
    good = (h / "S.zarr" / "partners.csv").read_text()
    header, first = good.splitlines()[:2]
    _write_partners(h / "dup.csv", good + first + "\n")
    _write_partners(h / "nonint.csv", good + "abc,3,7\n")
    _write_partners(h / "floatid.csv", good + "1.5,3,7\n")
    _write_partners(h / "negative.csv", good + "1,-3,7\n")
    _write_partners(h / "missingcol.csv", "cleft_id,pre_id\n1,3\n")
    _write_partners(h / "empty.csv", "")
    (h / "binary.csv").write_bytes(garbage)
    edges = edge_table(clefts, seg, partners, voxel_size_nm=VOXEL)
    write_table(edges, h / "edges.csv")

    models = h / "models"
    _build_models(models)
    return SimpleNamespace(root=h, sample=sample, models=models, header=header)

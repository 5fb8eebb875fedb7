"""On-disk cache of the detections shown by the "with predictions computed once, then cached"
samples.

Detecting clefts in a sample takes seconds on a CPU, so the result is kept in one ``.npz``
file per sample, keyed by the sample (kind, seed and a digest of its image) and the sha256
of the bundled detector's weights: new weights or a changed generator give a new file.
The cache is only an optimisation: a corrupt or unreadable file is recomputed and
replaced, and a folder that cannot be written only gives a warning.

Headless (no napari, no Qt, no torch): the detection itself is passed in as a callable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Environment variable naming the cache folder (default: ``$XDG_CACHE_HOME/napari-avan``).
CACHE_ENV = "NAPARI_AVAN_CACHE"
#: Version of the cache file layout; files of another version are recomputed.
CACHE_FORMAT = 1
#: The bundled model whose predictions the samples show.
DETECTOR = "cleft-detector"

_TABLE_PREFIX = "table__"
_log = logging.getLogger(__name__)


@dataclass
class SampleDetection:
    """Cleft probability (float32), cleft labels (uint32) and the cleft table (DataFrame)."""

    prob: np.ndarray
    clefts: np.ndarray
    table: Any


def cache_dir() -> Path:
    """The cache folder: ``$NAPARI_AVAN_CACHE``, else ``$XDG_CACHE_HOME/napari-avan``, else
    ``~/.cache/napari-avan``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # the XDG spec says relative values are invalid and must be ignored
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "napari-avan"


def detector_sha256(name: str = DETECTOR) -> str | None:
    """The registered weights sha256 of a bundled model, or None when it is not installed.

    Reads the registry file directly rather than through :mod:`napari_avan.models`, so a
    cache hit does not pay for importing torch.
    """
    import napari_avan.models

    registry = Path(napari_avan.models.__file__).with_name("weights") / "registry.json"
    try:
        entry = json.loads(registry.read_text()).get(name) or {}
    except (OSError, ValueError, AttributeError):
        return None
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    return str(sha) if sha else None


def cache_file(kind: str, seed: int, model_sha256: str, image: np.ndarray) -> Path:
    """The cache file of a sample's detection by a model with these weights."""
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]
    return cache_dir() / f"sample-{kind}-seed{seed}-{model_sha256[:16]}-{digest}.npz"


def load_detection(path: Path, shape: tuple[int, ...]) -> SampleDetection | None:
    """The detection stored in ``path``, or None when it is missing, corrupt or does not
    fit a volume of ``shape``."""
    import pandas as pd

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["format"]) != CACHE_FORMAT:
                return None
            prob = np.asarray(stored["prob"])
            clefts = np.asarray(stored["clefts"])
            columns = [str(c) for c in stored["table_columns"]]
            table = pd.DataFrame(
                {c: np.asarray(stored[_TABLE_PREFIX + c]) for c in columns}, columns=columns
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        _log.info("ignoring unreadable sample cache %s: %s", path, err)
        return None
    fits = (
        prob.shape == tuple(shape)
        and clefts.shape == tuple(shape)
        and prob.dtype == np.float32
        and clefts.dtype == np.uint32
        and "cleft_segid" in table.columns
    )
    if not fits:
        _log.info("ignoring sample cache %s: it does not match the sample", path)
        return None
    return SampleDetection(prob, clefts, table)


def _table_arrays(table: Any) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for column in table.columns:
        values = table[column].to_numpy()
        if values.dtype.kind == "O":  # text: store as fixed-width unicode, never pickled
            values = values.astype(str)
        arrays[_TABLE_PREFIX + str(column)] = values
    return arrays


def save_detection(path: Path, detection: SampleDetection) -> bool:
    """Write ``detection`` to ``path`` atomically (temporary file, then :func:`os.replace`).

    Returns:
        Whether the file was written; failures only warn, the cache being optional.
    """
    from napari_avan.core.files import atomic_path
    from napari_avan.types import AvanInputError

    arrays: dict[str, Any] = {
        "format": np.asarray(CACHE_FORMAT),
        "prob": np.asarray(detection.prob, np.float32),
        "clefts": np.asarray(detection.clefts, np.uint32),
        "table_columns": np.asarray([str(c) for c in detection.table.columns], dtype=str),
        **_table_arrays(detection.table),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a stale or corrupt file is replaced; readers see the old file or the new, never half
        with atomic_path(path, overwrite=True, sync=False) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    except (OSError, AvanInputError) as err:
        warnings.warn(
            f"napari-avan could not cache the sample's predictions in {path.parent} ({err}); "
            f"they will be computed again next time. Set {CACHE_ENV} to a writable folder "
            "to keep them.",
            stacklevel=2,
        )
        return False
    return True


def cached_detection(
    kind: str, seed: int, image: np.ndarray, compute: Callable[[], Any]
) -> SampleDetection:
    """The detection of a sample from the cache, else from ``compute()`` (then cached).

    Args:
        kind: the sample's kind (e.g. ``"polyadic"``), part of the cache key.
        seed: the sample's seed, part of the cache key.
        image: the sample's image (its digest is part of the key).
        compute: runs the bundled detector; returns an object with ``prob``, ``clefts``
            and ``table`` (:class:`napari_avan.models.detect.Detection`).
    """
    sha = detector_sha256()
    if sha is None:  # no bundled detector to key on: compute() raises the helpful error
        return _as_sample_detection(compute())
    path = cache_file(kind, seed, sha, image)
    found = load_detection(path, image.shape)
    if found is not None:
        return found
    detection = _as_sample_detection(compute())
    save_detection(path, detection)
    return detection


def _as_sample_detection(detection: Any) -> SampleDetection:
    return SampleDetection(
        np.asarray(detection.prob, np.float32),
        np.asarray(detection.clefts, np.uint32),
        detection.table,
    )

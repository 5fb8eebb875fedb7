"""Model files (DESIGN section 4): a folder with ``weights.pt`` (a plain state_dict) and
``model.json`` (architecture, working voxel size, training metadata, weights sha256).

Weights load with ``torch.load(weights_only=True)``, so a file that carries code is refused;
the sha256 recorded in ``model.json`` (and, for bundled models, in the registry) is checked
before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_avan.models.networks import (
    PrunerConfig,
    PrunerNet,
    ResidualSymmetricUNet,
    UNetConfig,
)
from napari_avan.types import AvanInputError

FORMAT = "napari-avan-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
META_FILE = "model.json"


@dataclass
class LoadedModel:
    """A network with its metadata, as read from a model folder."""

    network: nn.Module
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_network(architecture: dict[str, Any]) -> nn.Module:
    """Construct the network an architecture record describes."""
    kind = architecture.get("kind")
    config = architecture.get("config")
    if not isinstance(config, dict):
        raise AvanInputError("the model metadata has no architecture config")
    if kind == "unet":
        return ResidualSymmetricUNet(UNetConfig.from_dict(config))
    if kind == "pruner":
        return PrunerNet(PrunerConfig.from_dict(config))
    raise AvanInputError(f"unknown architecture kind {kind!r} in the model metadata")


def architecture_of(network: nn.Module) -> dict[str, Any]:
    if isinstance(network, ResidualSymmetricUNet):
        return {"kind": "unet", "config": network.config.to_dict()}
    if isinstance(network, PrunerNet):
        return {"kind": "pruner", "config": network.config.to_dict()}
    raise AvanInputError(f"cannot save a {type(network).__name__}: not a napari-avan network")


def save_model(
    directory: str | Path,
    network: nn.Module,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    extras: dict[str, bytes] | None = None,
) -> Path:
    """Write ``network`` and its metadata to a model folder, atomically.

    Args:
        directory: the model folder to create.
        network: a :class:`ResidualSymmetricUNet` or :class:`PrunerNet`.
        metadata: JSON-safe extras (working voxel size, patch shape, normalisation,
            target, training data and steps, metrics).
        overwrite: replace an existing folder.
        extras: more files to write into the folder (name -> content), such as the
            training log; they land atomically with the weights.

    Returns:
        The folder written.
    """
    directory = Path(directory)
    for name in extras or {}:
        if Path(name).name != name or name in (WEIGHTS_FILE, META_FILE):
            raise AvanInputError(f"extra model file name {name!r} is not allowed")
    if directory.exists() and not overwrite:
        raise AvanInputError(f"{directory} exists: choose another folder or pass overwrite")
    record = {
        **(metadata or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(network),
    }
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        record["weights_sha256"] = sha256_of(tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        for name, content in (extras or {}).items():
            (tmp / name).write_bytes(content)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AvanInputError(
            f"could not write model {directory}: {err.strerror or err}; free space or "
            "choose another folder"
        ) from err
    return directory


def _files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        return path / WEIGHTS_FILE, path / META_FILE
    return path, path.with_name(META_FILE)


def load_model(
    path: str | Path, *, expected_sha256: str | None = None, map_location: str = "cpu"
) -> LoadedModel:
    """Read a model folder (or its ``weights.pt``) written by :func:`save_model`.

    Args:
        path: the model folder, or the weights file with ``model.json`` beside it.
        expected_sha256: the weights' hash from a trusted registry (bundled models).
        map_location: torch device to load the tensors onto.

    Raises:
        AvanInputError: the files are missing, not a napari-avan model, corrupt or
            altered (hash mismatch), carry code, or do not fit their architecture.
    """
    path = Path(path)
    weights, meta_path = _files(path)
    if not weights.is_file() or not meta_path.is_file():
        raise AvanInputError(
            f"{path} is not a model: expected a folder with {WEIGHTS_FILE} and {META_FILE}"
        )
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise AvanInputError(f"{meta_path} is not readable JSON: the model is corrupt") from err
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise AvanInputError(f"{meta_path} does not describe a napari-avan model")
    actual = sha256_of(weights)
    for source, wanted in (
        ("model.json", metadata.get("weights_sha256")),
        ("the model registry", expected_sha256),
    ):
        if wanted is not None and wanted != actual:
            raise AvanInputError(
                f"{weights} does not match the sha256 in {source}: the file is corrupt or "
                "was altered; restore or retrain it"
            )
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise AvanInputError(
            f"{weights} was refused: it is not a plain state_dict (it may carry code)"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise AvanInputError(f"{weights} is not a readable torch file: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AvanInputError(f"{weights} does not hold a state_dict of tensors")
    network = build_network(metadata.get("architecture") or {})
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else "mismatch"
        raise AvanInputError(
            f"{weights} does not fit the architecture in {meta_path.name}: {first}"
        ) from err
    network.eval()
    return LoadedModel(network=network, metadata=metadata, path=path)


# --- bundled models ---------------------------------------------------------------------------

#: Folder of the bundled models and their registry (name -> weights sha256, task).
BUNDLED_DIR = Path(__file__).with_name("weights")
REGISTRY_FILE = "registry.json"
#: The bundled model each task uses when none is named.
DEFAULT_MODELS = {
    "cleft-detector": "cleft-detector",
    "avan": "avan",
    "mask-pruner": "mask-pruner",
    "proximity-pruner": "proximity-pruner",
}


def bundled_models() -> dict[str, dict[str, Any]]:
    """The registry of bundled models (empty when none are installed)."""
    path = BUNDLED_DIR / REGISTRY_FILE
    if not path.is_file():
        return {}
    registry = json.loads(path.read_text())
    if not isinstance(registry, dict):
        raise AvanInputError(f"{path} is not a model registry: reinstall napari-avan")
    return registry


def resolve_model(spec: str | Path | None, task: str) -> LoadedModel:
    """Load a model by folder path or bundled name; ``None`` gives the task's default.

    Args:
        spec: a model folder (or its weights file), a bundled model name, or None.
        task: a key of :data:`DEFAULT_MODELS` (``"cleft-detector"``, ``"avan"``, a pruner):
            picks the default and is checked against
            the model's metadata.

    Raises:
        AvanInputError: unknown name, missing bundled weights, or a model for another task.
    """
    if task not in DEFAULT_MODELS:
        raise AvanInputError(f"task {task!r} is not one of {sorted(DEFAULT_MODELS)}")
    registry = bundled_models()
    name = str(spec) if spec is not None else DEFAULT_MODELS[task]
    if spec is not None and Path(spec).exists():
        model = load_model(spec)
    elif name in registry:
        model = load_model(BUNDLED_DIR / name, expected_sha256=registry[name].get("sha256"))
    else:
        known = ", ".join(sorted(registry)) or "none installed"
        raise AvanInputError(
            f"{name!r} is neither a model folder nor a bundled model (bundled: {known})"
        )
    found = model.metadata.get("task")
    if found is not None and found != task:
        raise AvanInputError(f"{name} is a {found} model, but a {task} model is needed here")
    return model


def register_bundled(name: str) -> dict[str, Any]:
    """Record a model folder under :data:`BUNDLED_DIR` in the registry (maintainers only)."""
    folder = BUNDLED_DIR / name
    meta = json.loads((folder / META_FILE).read_text())
    registry = bundled_models()
    registry[name] = {
        "sha256": sha256_of(folder / WEIGHTS_FILE),
        "task": meta.get("task"),
        "metrics": meta.get("metrics", {}),
    }
    (BUNDLED_DIR / REGISTRY_FILE).write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    return registry[name]

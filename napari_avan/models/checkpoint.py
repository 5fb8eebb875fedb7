"""Model files (docs/architecture.md, model folders): a folder with ``weights.pt`` (a plain
state_dict) and ``model.json`` (architecture, working voxel size, training metadata, weights
sha256).

Weights load with ``torch.load(weights_only=True)``, so a file that carries code is refused;
the sha256 recorded in ``model.json`` (and, for bundled models, in the registry) is checked
before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_avan.core.files import atomic_path, write_buffered
from napari_avan.models.networks import (
    PrunerConfig,
    PrunerNet,
    ResidualSymmetricUNet,
    UNetConfig,
)
from napari_avan.types import AvanInputError, one_line

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
    if not directory.parent.is_dir():
        directory.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory, overwrite=overwrite) as tmp:
        tmp.mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        write_buffered(tmp / WEIGHTS_FILE, lambda out: torch.save(state, out))
        record["weights_sha256"] = sha256_of(tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        for name, content in (extras or {}).items():
            (tmp / name).write_bytes(content)
    return directory


def load_tensors(
    path: Path, expected_sha256: str | None, *, what: str, map_location: str = "cpu"
) -> dict[str, Any]:
    """A torch file of tensors and plain values, its sha256 checked before it is opened.

    Loaded with ``weights_only=True``, so a pickle that carries code is refused.

    Args:
        path: the file (``weights.pt``, ``proximity.pt``, ``train_state.pt``).
        expected_sha256: the hash it must have; None skips the check (callers say why).
        what: what the file is, for messages (``"weights"``, ``"training state"``).
        map_location: torch device to load the tensors onto.

    Raises:
        AvanInputError: the file is missing, altered (hash mismatch), carries code,
            is not a torch file, or does not hold a dict.
    """
    try:
        if expected_sha256 is not None and sha256_of(path) != expected_sha256:
            raise AvanInputError(
                f"{path} does not match its recorded sha256: the {what} file is corrupt or was "
                "altered; restore or retrain it"
            )
        with warnings.catch_warnings():
            # A foreign pickle makes torch warn about its protocol before refusing it.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except AvanInputError:
        raise
    except pickle.UnpicklingError as err:
        raise AvanInputError(
            f"{path} was refused: it is not a plain {what} file of tensors (it may carry code)"
        ) from err
    except Exception as err:  # torch.load raises many kinds for a damaged file
        raise AvanInputError(
            f"{path} is not a readable torch {what} file: {one_line(err)}"
        ) from err
    if not isinstance(state, dict):
        raise AvanInputError(f"{path} does not hold a dictionary of {what}")
    return state


def unverified(path: Path) -> AvanInputError:
    """The error for a model folder whose ``model.json`` records no weights hash."""
    return AvanInputError(
        f"{path} records no sha256 for its weights, so they cannot be verified: if you trust "
        f"this folder, record the hashes with 'napari-avan model rehash {path}'"
    )


def rehash_model(path: str | Path) -> dict[str, str]:
    """Record the sha256 of a trusted model folder's weights files in its ``model.json``.

    Each weights file is first loaded as plain tensors (a pickle carrying code is
    refused); ``model.json`` is then replaced atomically.

    Returns:
        The recorded hashes by metadata key.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise AvanInputError(f"{folder} is not a model folder: give the folder with {META_FILE}")
    weights, meta_path = folder / WEIGHTS_FILE, folder / META_FILE
    metadata = _read_metadata(folder, weights, meta_path)
    hashes: dict[str, str] = {}
    for key, name in _WEIGHTS_KEYS:
        file = folder / name
        if key == "weights_sha256" or file.is_file():
            load_tensors(file, None, what="weights")
            hashes[key] = sha256_of(file)
    text = json.dumps({**metadata, **hashes}, indent=2, sort_keys=True) + "\n"
    with atomic_path(meta_path, overwrite=True) as tmp:
        tmp.write_text(text)
    return hashes


#: The weights files of a model folder and the ``model.json`` keys of their hashes.
_WEIGHTS_KEYS = (("weights_sha256", WEIGHTS_FILE), ("proximity_sha256", "proximity.pt"))


def compact_model(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Copy a model folder with its floating-point weights stored as float16 (half the
    size on disk; they load back into float32 networks, so nothing else changes).

    The copy's ``model.json`` records ``weights_dtype`` and the new hashes. The original
    and the copy are run on the same fixed input and the largest difference of their
    outputs (after the sigmoid) is returned with the sizes, so the caller can check that
    the outputs match.

    Raises:
        AvanInputError: ``src`` is not a loadable model, ``dst`` exists.
    """
    import shutil

    src, dst = Path(src), Path(dst)
    original = load_model(src)  # verified: hash, plain tensors, architecture
    folder = src if src.is_dir() else src.parent
    meta_path = folder / META_FILE
    metadata = _read_metadata(folder, folder / WEIGHTS_FILE, meta_path)
    if dst.exists():
        raise AvanInputError(f"{dst} exists: choose a new folder for the compact copy")
    sizes = {"before": 0, "after": 0}
    with atomic_path(dst, overwrite=False) as tmp:
        shutil.copytree(folder, tmp)
        for key, name in _WEIGHTS_KEYS:
            if not (tmp / name).is_file():
                continue
            state = load_tensors(tmp / name, metadata.get(key), what="weights")
            half = {
                k: v.half() if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in state.items()
            }
            sizes["before"] += (tmp / name).stat().st_size
            _save_state(tmp / name, half)
            sizes["after"] += (tmp / name).stat().st_size
            metadata[key] = sha256_of(tmp / name)
        metadata["weights_dtype"] = "float16"
        (tmp / META_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    compact = load_model(dst)
    return {**sizes, "max_output_difference": _output_difference(original, compact)}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    write_buffered(path, lambda out: torch.save(state, out))


def _output_difference(a: LoadedModel, b: LoadedModel) -> float:
    """The largest difference of two networks' sigmoid outputs on one fixed random input."""
    config = getattr(a.network, "config", None)
    if isinstance(config, UNetConfig):
        divisor = config.divisor
        shape: tuple[int, ...] = (1, config.in_channels, 2 * divisor[0], 8 * divisor[1],
                                  8 * divisor[2])  # fmt: skip
    elif isinstance(config, PrunerConfig):  # a pruner pools its features: any patch will do
        shape = (2, config.in_channels, 4, 32, 32)
    else:
        raise AvanInputError("not a napari-avan network: nothing to compare")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=generator)
    with torch.no_grad():
        ya, yb = a.network.eval()(x), b.network.eval()(x)
    return float((torch.sigmoid(ya) - torch.sigmoid(yb)).abs().max())


def _read_metadata(path: Path, weights: Path, meta_path: Path) -> dict[str, Any]:
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
    return metadata


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
    metadata = _read_metadata(path, weights, meta_path)
    recorded = metadata.get("weights_sha256")
    if recorded is None:
        raise unverified(weights.parent)
    if expected_sha256 is not None and expected_sha256 != recorded:
        raise AvanInputError(
            f"{weights} does not match the sha256 in the model registry: the file is corrupt "
            "or was altered; reinstall napari-avan"
        )
    state = load_tensors(weights, recorded, what="weights", map_location=map_location)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
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
    with atomic_path(BUNDLED_DIR / REGISTRY_FILE, overwrite=True) as tmp:
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    return registry[name]

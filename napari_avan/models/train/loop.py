"""The training loop: any :class:`~napari_avan.models.train.tasks.TrainingTask`, a budget,
validation every ``val_every`` steps, the best model and a resumable state on disk."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from napari_avan.models.checkpoint import (
    LoadedModel,
    architecture_of,
    build_network,
    load_model,
    load_tensors,
    resolve_model,
    save_model,
)
from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.models.networks import PrunerNet, ResidualSymmetricUNet
from napari_avan.models.train.settings import TrainingVolume, TrainProgress, TrainSettings
from napari_avan.models.train.tasks import TrainingTask, task_for
from napari_avan.types import AvanInputError, check_voxel_size

STATE_FILE = "train_state.pt"
#: What a training state holds (see :meth:`_Session.state`).
RESUME_KEYS = frozenset(
    {"weights", "optimiser", "step", "elapsed_s", "best", "log", "rng", "torch_rng"}
)
LOG_FILE = "log.csv"
RECIPE_FILE = "recipe.json"


def resume_state(out: Path, resume: bool) -> dict[str, Any] | None:
    """The training state to continue from in ``out`` (None for a new run), checked.

    Raises:
        AvanInputError: ``out`` exists without ``resume``, holds no state, or holds a
            damaged one; ``resume`` without ``out``.
    """
    out = Path(out)
    state: dict[str, Any] | None = None
    if out.exists():
        if not resume:
            raise AvanInputError(
                f"{out} exists: choose a new folder, or pass --resume to continue its run"
            )
        if not (out / STATE_FILE).is_file():
            raise AvanInputError(
                f"{out} holds no training state (the run finished): fine-tune it with --init "
                "into a new folder instead"
            )
        state = load_tensors(out / STATE_FILE, None, what="training state")
        missing = sorted(RESUME_KEYS - set(state))
        if missing:
            raise AvanInputError(
                f"{out / STATE_FILE} is not a training state (no {', '.join(missing)}): "
                "choose a new --out folder to start over"
            )
    elif resume:
        raise AvanInputError(f"--resume given, but {out} does not exist")
    return state


def _lr_factor(fraction: float) -> float:
    """Linear warm-up over the first 3 % of the budget, then cosine down to 5 %."""
    if fraction < 0.03:
        return 0.1 + 0.9 * fraction / 0.03
    t = min(1.0, (fraction - 0.03) / 0.97)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


def _train_autocast(run: RunPlan, network: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for training where it is known to work, else full precision.

    On the CPU, torch 2.13's bf16 convolution backward corrupts the heap or hangs for some
    shapes: single-threaded with an 8 x 96 x 96 patch (abort), and with narrow layers (4 to
    8 channels, hang). The default networks (>= 16 channels) on >= 2 threads train
    correctly, so only they use bf16 on the CPU.
    """
    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    if run.device.type == "cpu":
        config = getattr(network, "config", None)
        narrow = config is None or min(config.widths) < 16
        if narrow or torch.get_num_threads() < 2:
            return contextlib.nullcontext()
    return torch.autocast(run.device.type, dtype=run.autocast_dtype)


def _metadata(
    task: TrainingTask,
    out: Path,
    train: Sequence[TrainingVolume],
    val: Sequence[TrainingVolume],
    init: str | Path | None,
) -> dict[str, Any]:
    """``model.json`` of the run (metrics, steps and post-processing are added later)."""
    settings = task.settings
    patch = settings.train_patch
    metadata: dict[str, Any] = {
        "name": out.name,
        "task": task.model_task,
        "target": task.target,
        **task.metadata(),
        "polyadic": settings.polyadic,
        "voxel_size_nm": list(task.voxel_size_nm),
        "patch": list(patch),
        "normalisation": "uint8 / 255, float as is",
        "training": {
            "settings": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(settings).items()
                if k != "augmentation"
            },
            "augmentation": asdict(settings.augmentation),
            "train_volumes": [v.name for v in train],
            "val_volumes": [v.name for v in val],
            "init": str(init) if init is not None else None,
        },
    }
    window = task.inference_window()
    if window:
        metadata.update(window)
        metadata["training"]["patch"] = list(patch)
    return metadata


def _weights(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


class _Session:
    """One run's changing state: the network and its optimiser, the random stream, the
    step and clock, the best model so far and the log; written to ``out`` by
    :meth:`checkpoint`."""

    def __init__(
        self,
        task: TrainingTask,
        network: nn.Module,
        rng: np.random.Generator,
        out: Path,
        metadata: dict[str, Any],
        recipe: dict[str, Any] | None,
        state: dict[str, Any] | None,
    ) -> None:
        self.task, self.settings, self.network, self.rng = task, task.settings, network, rng
        self.out, self.metadata, self.recipe = out, metadata, recipe
        self.optimiser = torch.optim.Adam(network.parameters(), lr=self.settings.lr)
        self.log_rows: list[dict[str, Any]] = []
        self.step, self.elapsed_before = 0, 0.0
        self.best: dict[str, float] | None = None
        self.losses: list[float] = []  # since the last validation
        if state is not None:
            network.load_state_dict(state["weights"])
            self.optimiser.load_state_dict(state["optimiser"])
            self.step, self.elapsed_before = int(state["step"]), float(state["elapsed_s"])
            self.best = {k: float(v) for k, v in json.loads(state["best"]).items()} or None
            self.log_rows = json.loads(state["log"])
            rng.bit_generator.state = json.loads(state["rng"])
            torch.set_rng_state(state["torch_rng"])
        self.best_weights = _weights(network)
        if state is not None and (out / "weights.pt").is_file():
            self.best_weights = load_model(out).network.state_dict()
        self.started = time.perf_counter()
        minutes = self.settings.minutes
        self.budget_s = minutes * 60 if minutes is not None else None

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def fraction(self) -> float:
        """How much of the budget (steps, minutes or the first to run out) is used, 0..1."""
        parts = []
        if self.settings.steps is not None:
            parts.append(self.step / self.settings.steps)
        if self.budget_s is not None:
            parts.append(self.elapsed() / self.budget_s)
        return min(1.0, max(parts))

    def train_step(self, run: RunPlan) -> float:
        """One optimiser step on a fresh batch; its loss."""
        self.network.train()
        for group in self.optimiser.param_groups:
            group["lr"] = self.settings.lr * _lr_factor(self.fraction())
        size = self.settings.batch_size
        batch = [self.task.example(self.rng, self.step * size + b) for b in range(size)]
        x_t = run.tensor(torch.from_numpy(np.stack([x for x, _ in batch])))
        y_t = torch.from_numpy(np.stack([y for _, y in batch])).to(run.device)
        with _train_autocast(run, self.network):
            logits = self.network(x_t)
        loss = self.task.loss(logits.float(), y_t)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        value = float(loss.detach())
        self.losses.append(value)
        self.step += 1
        return value

    def best_model(self) -> LoadedModel:
        """The best model so far, in evaluation mode (a copy of its weights)."""
        network = build_network(architecture_of(self.network))
        network.load_state_dict(self.best_weights)
        network.eval()
        return LoadedModel(network, self.metadata)

    def validate(self, run: RunPlan, done: bool) -> dict[str, float]:
        """Validate, keep the best model, log, choose the post-processing when ``done``, and
        write the model folder (with the resumable state unless ``done``)."""
        validation = self.task.validate(LoadedModel(self.network, self.metadata), run)
        if self.settings.keep_last or self.task.better(validation, self.best):
            self.best = validation
            self.best_weights = _weights(self.network)
        if done:
            self.metadata["postprocess"] = self.task.tune(self.best_model, run)
        self.log_rows.append(
            {
                "step": self.step,
                "elapsed_s": round(self.elapsed(), 1),
                "lr": self.optimiser.param_groups[0]["lr"],
                "loss": float(np.mean(self.losses)),
                **validation,
            }
        )
        self.losses.clear()
        self.checkpoint(with_state=not done)
        return validation

    def state(self) -> bytes:
        """The resumable training state (:data:`RESUME_KEYS`), as :data:`STATE_FILE` bytes."""
        buffer = io.BytesIO()
        torch.save(
            {
                "weights": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
                "optimiser": self.optimiser.state_dict(),
                "step": self.step,
                "elapsed_s": self.elapsed(),
                "best": json.dumps(self.best or {}),
                "log": json.dumps(self.log_rows),
                "rng": json.dumps(self.rng.bit_generator.state),
                "torch_rng": torch.get_rng_state(),
            },
            buffer,
        )
        return buffer.getvalue()

    def checkpoint(self, with_state: bool) -> None:
        """Write the best model so far with the log, the recipe and the task's files."""
        extras = {
            **self.task.files(),
            LOG_FILE: pd.DataFrame(self.log_rows).to_csv(index=False).encode(),
            RECIPE_FILE: (json.dumps(self.recipe or {}, indent=2) + "\n").encode(),
        }
        if with_state:
            extras[STATE_FILE] = self.state()
        holder = build_network(architecture_of(self.network))
        holder.load_state_dict(self.best_weights)
        meta = {**self.metadata, "metrics": self.best or {}, "steps": self.step}
        save_model(self.out, holder, meta, overwrite=True, extras=extras)


def iter_train(
    settings: TrainSettings,
    train: Sequence[TrainingVolume],
    val: Sequence[TrainingVolume],
    out: str | Path,
    *,
    init: str | Path | None = None,
    resume: bool = False,
    run: RunPlan | None = None,
    recipe: dict[str, Any] | None = None,
    proximity_model: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
) -> Iterator[TrainProgress]:
    """Train a model into the folder ``out``, yielding progress after every step.

    Args:
        settings: kind, budget, optimiser and sampling settings; ``voxel_size_nm`` is the
            working voxel size the volumes were prepared at.
        train, val: volumes from :func:`prepare_volume`.
        out: model folder to create (it must not exist, unless ``resume``).
        init: a model folder or bundled name to fine-tune from.
        resume: continue an interrupted run from the state saved in ``out``.
        recipe: what to record beside the weights (the command line, data names).
        proximity_model: the signed proximity detector of a proximity pruner (its candidates
            come from this detector's predictions, and the pruner's folder keeps a copy).
    """
    out = Path(out)
    if settings.voxel_size_nm is None:
        raise AvanInputError("settings.voxel_size_nm (the working voxel size) is not set")
    if not train or not val:
        raise AvanInputError("training needs at least one training and one validation volume")
    check_voxel_size(settings.voxel_size_nm)
    state = resume_state(out, resume)
    run = run or make_plan()
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    task = task_for(settings, proximity_model=proximity_model)
    init_model = resolve_model(init, task.model_task) if init is not None else None
    network = task.network(init_model).to(run.device)
    assert isinstance(network, ResidualSymmetricUNet | PrunerNet)
    if run.channels_last:
        network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    # the task reads the volumes after the network is made: the random streams stay put
    task.prepare(train, val, run)
    metadata = _metadata(task, out, train, val, init)
    if provenance:
        metadata["provenance"] = provenance
    session = _Session(task, network, rng, out, metadata, recipe, state)
    while session.fraction() < 1.0:
        loss = session.train_step(run)
        done = session.fraction() >= 1.0
        validation = None
        if session.step % settings.val_every == 0 or done:
            validation = session.validate(run, done)
        yield TrainProgress(
            session.step,
            settings.steps,
            session.fraction(),
            loss,
            session.elapsed(),
            validation,
            session.best,
            validation is not None,
        )

"""Training the cleft detector, AVAN and the pruner baselines (``napari-avan train``).

Volumes are resampled once to the model's working voxel size (:mod:`.settings`). Each step
draws a batch of examples from the task's sampler (:mod:`.samplers`), augments them
(:mod:`napari_avan.models.augment`) and takes an Adam step whose learning rate warms up and
then follows a cosine to 5 % of its start over the budget (steps or minutes, whichever ends
first). Every ``val_every`` steps the model is scored on the validation volumes through the
same code that serves users (:mod:`.validation`: sliding-window detection; AVAN assignment
of every validation cleft); the best model so far is written to the output folder with the
training log, and a resumable training state rides beside it until the run ends.
:func:`iter_train` (:mod:`.loop`) yields :class:`TrainProgress` after every step; what
differs between kinds of model is one :class:`TrainingTask` each (:mod:`.tasks`). What the
output folder holds is described in docs/architecture.md (model folders).
"""

from napari_avan.models.train.loop import (
    LOG_FILE,
    RECIPE_FILE,
    RESUME_KEYS,
    STATE_FILE,
    iter_train,
    resume_state,
)
from napari_avan.models.train.samplers import AvanSampler, DetectorSampler, PrunerSampler
from napari_avan.models.train.settings import (
    DEFAULT_TRAIN_PATCH,
    DETECTOR_INPLANE_NM,
    DETECTOR_TRAIN_TARGETS,
    KINDS,
    TrainingVolume,
    TrainProgress,
    TrainSettings,
    detector_voxel_size,
    prepare_volume,
)
from napari_avan.models.train.tasks import (
    AvanTask,
    CleftDetectorTask,
    CleftNetDetectorTask,
    MaskPrunerTask,
    ProximityDetectorTask,
    ProximityPrunerTask,
    TrainingTask,
    task_for,
)
from napari_avan.models.train.validation import (
    validate_avan,
    validate_detector,
    validate_proximity,
    validate_pruner,
)

__all__ = [
    "DEFAULT_TRAIN_PATCH",
    "DETECTOR_INPLANE_NM",
    "DETECTOR_TRAIN_TARGETS",
    "KINDS",
    "LOG_FILE",
    "RECIPE_FILE",
    "RESUME_KEYS",
    "STATE_FILE",
    "AvanSampler",
    "AvanTask",
    "CleftDetectorTask",
    "CleftNetDetectorTask",
    "DetectorSampler",
    "MaskPrunerTask",
    "ProximityDetectorTask",
    "ProximityPrunerTask",
    "PrunerSampler",
    "TrainProgress",
    "TrainSettings",
    "TrainingTask",
    "TrainingVolume",
    "detector_voxel_size",
    "iter_train",
    "prepare_volume",
    "resume_state",
    "task_for",
    "validate_avan",
    "validate_detector",
    "validate_proximity",
    "validate_pruner",
]

"""Choose a trained model's post-processing on validation volumes and store it in its folder.

``napari-avan train`` does this itself when it ends (``napari_avan.models.tune``); this
script does it for a model trained before that, or on other validation volumes. It builds
the synthetic validation volumes of the training recipes (seeds from 2000 dyadic and 2500
polyadic; hold-out seeds are never used), runs the grid of the model's kind, prints the
choice and, with ``--write``, stores it as ``postprocess`` in the model's ``model.json``
(the weights and their sha256 are untouched).
Run ``python benchmarks/tune_postprocess.py MODEL --val-synthetic 2 --val-synthetic-polyadic 1
[--write]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_avan.core.synth import synthesize
from napari_avan.models.checkpoint import BUNDLED_DIR, META_FILE, load_model
from napari_avan.models.device import plan
from napari_avan.models.pruners import (
    PRUNER_TASKS,
    PrunerCandidates,
    load_proximity,
    predict_proximity,
)
from napari_avan.models.train import prepare_volume
from napari_avan.models.training_data import SYNTH_VAL_SEED
from napari_avan.models.tune import tune_avan, tune_detector, tune_pruner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder or bundled name")
    parser.add_argument("--val-synthetic", type=int, default=2)
    parser.add_argument("--val-synthetic-polyadic", type=int, default=1)
    parser.add_argument("--shape", default="32,256,256")
    parser.add_argument("--write", action="store_true", help="store the choice in model.json")
    args = parser.parse_args()
    folder = Path(args.model) if Path(args.model).exists() else BUNDLED_DIR / args.model
    model = load_model(folder)
    meta = model.metadata
    working = tuple(meta["voxel_size_nm"])
    shape = tuple(int(v) for v in args.shape.split(","))
    run = plan()
    volumes = []
    for polyadic, count in ((False, args.val_synthetic), (True, args.val_synthetic_polyadic)):
        for seed in range(SYNTH_VAL_SEED[polyadic], SYNTH_VAL_SEED[polyadic] + count):
            s = synthesize(seed=seed, shape=shape, polyadic=polyadic)
            volumes.append(prepare_volume(s.image, s.segmentation, s.clefts, s.partners,
                                          s.voxel_size_nm, working, f"seed {seed}"))  # fmt: skip
    task = meta.get("task")
    if task == "cleft-detector":
        choice = tune_detector(model, volumes, run)
    elif task == "avan":
        choice = tune_avan(model, volumes, run)
    elif task in PRUNER_TASKS:
        detector = load_proximity(model) if task == "proximity-pruner" else None
        candidates = [
            PrunerCandidates(
                task, v.image, v.segmentation, v.clefts, working, partners=v.partners,
                proximity=None if detector is None else
                predict_proximity(detector, v.image, working, run=run),
                patch=tuple(meta["patch"]),
            )
            for v in volumes
        ]  # fmt: skip
        choice = tune_pruner(model, volumes, candidates, run)
    else:
        raise SystemExit(f"no post-processing to tune for a {task} model")
    print(json.dumps(choice, indent=2))
    if args.write:
        path = folder / META_FILE
        record = json.loads(path.read_text())
        record["postprocess"] = choice
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        print(f"wrote postprocess into {path}")


if __name__ == "__main__":
    main()

"""Grid search of the detector's post-processing on the validation volumes only.

Prints cleft object F1 (tp, fp, fn) for each threshold x minimum size on the synthetic
validation seeds of the bundled recipe (2000, 2001 dyadic; 2500 polyadic), which chose the
``postprocess`` values in the bundled detector's ``model.json``. Hold-out seeds are never
used here. Run ``python benchmarks/tune_detector.py [--model cleft-detector]``.
"""

from __future__ import annotations

import argparse

from napari_avan.cli import SYNTH_VAL_SEED
from napari_avan.core.clefts import clefts_from_probability
from napari_avan.core.metrics import cleft_metrics, precision_recall_f1
from napari_avan.core.synth import synthesize
from napari_avan.models.checkpoint import resolve_model
from napari_avan.models.detect import detect

THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)
MIN_SIZES = (50, 200, 500, 1000)  # voxels at 40 x 4 x 4 nm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or bundled name")
    args = parser.parse_args()
    model = resolve_model(args.model, "cleft-detector")
    seeds = [(SYNTH_VAL_SEED[False], False), (SYNTH_VAL_SEED[False] + 1, False)]
    seeds.append((SYNTH_VAL_SEED[True], True))
    volumes = [synthesize(seed=s, shape=(32, 256, 256), polyadic=p) for s, p in seeds]
    probs = [detect(model, v.image, v.voxel_size_nm).prob for v in volumes]
    print("threshold min_size  cleft_F1   tp   fp   fn")
    for threshold in THRESHOLDS:
        for min_size in MIN_SIZES:
            tp = fp = fn = 0
            for volume, prob in zip(volumes, probs, strict=True):
                labels = clefts_from_probability(prob, threshold=threshold, min_size=min_size)
                m = cleft_metrics(labels, volume.clefts)
                tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
            f1 = precision_recall_f1(tp, fp, fn)[2]
            print(f"{threshold:9.2f} {min_size:8d} {f1:9.3f} {tp:4d} {fp:4d} {fn:4d}")


if __name__ == "__main__":
    main()

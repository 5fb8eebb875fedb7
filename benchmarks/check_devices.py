"""The bundled models on two devices: the same clefts and partners, and the time each takes.

Runs the bundled detector and AVAN on a synthetic hold-out volume of each kind (seeds 9001
dyadic, 9501 polyadic) on every device named, each with bf16 autocast where the device
allows it and in fp32, and compares each run with the first: the largest probability
difference, the cleft voxels that differ at the model's threshold, the clefts given the
same edges, and the largest difference of AVAN's mean presynaptic scores. Used for the
CUDA check when a GPU is at hand::

    python benchmarks/check_devices.py cpu cuda
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from _machine import cpu_name

from napari_avan.core.synth import synthesize
from napari_avan.models.assign import iter_assign
from napari_avan.models.checkpoint import resolve_model
from napari_avan.models.detect import detect
from napari_avan.models.device import plan

SEEDS = ((9001, False), (9501, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("devices", nargs="*", default=["cpu", "cuda"])
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"torch {torch.__version__}; CPU {cpu_name()}; {gpu}")
    detector = resolve_model(None, "cleft-detector")
    avan = resolve_model(None, "avan")
    for seed, polyadic in SEEDS:
        sample = synthesize(seed=seed, polyadic=polyadic)
        runs: dict[str, tuple[Any, dict[int, Any]]] = {}
        for device in args.devices:
            for fp32 in (False, True):
                run = plan(device, allow_bf16=not fp32)
                started = time.perf_counter()
                found = detect(detector, sample.image, sample.voxel_size_nm, run=run)
                detect_s = time.perf_counter() - started
                started = time.perf_counter()
                edges = {}
                for step in iter_assign(
                    avan, sample.image, sample.clefts, sample.segmentation,
                    sample.voxel_size_nm, run=run, polyadic=polyadic,
                ):  # fmt: skip
                    for a in step.finished:
                        edges[a.cleft_id] = (tuple(a.edges), np.asarray(a.pre_scores))
                assign_s = time.perf_counter() - started
                runs[run.describe()] = (found, edges)
                print(f"seed {seed} {run.describe()}: detect {detect_s:.2f} s "
                      f"({int(found.clefts.max())} clefts), assign {assign_s:.2f} s "
                      f"({len(edges)} clefts)", flush=True)  # fmt: skip
        names = list(runs)
        ref_found, ref_edges = runs[names[0]]
        for name in names[1:]:
            found, edges = runs[name]
            prob = float(np.abs(ref_found.prob - found.prob).max())
            voxels = int(((ref_found.clefts > 0) ^ (found.clefts > 0)).sum())
            same = sum(ref_edges[c][0] == edges[c][0] for c in ref_edges)
            score = max(float(np.abs(ref_edges[c][1] - edges[c][1]).max()) for c in ref_edges)
            print(f"seed {seed} {names[0]} against {name}: probability differs by up to "
                  f"{prob:.4f}, {voxels} cleft voxels differ, same edges {same}/"
                  f"{len(ref_edges)}, pre scores differ by up to {score:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Generate a synthetic volume, build its tables, and score a perturbed prediction.

Shows the headless API: ``synthesize`` (exact ground truth), ``cleft_table`` and
``edge_table`` (docs/architecture.md, the cleft and edge tables), and the metrics of
``napari-avan evaluate``. Run it as
``python examples/evaluate_synthetic.py [--shape 16,192,192] [--seed 3]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_avan.core.metrics import assignment_metrics, cleft_metrics
from napari_avan.core.synth import synthesize
from napari_avan.core.tables import cleft_table, edge_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="16,192,192")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))

    sample = synthesize(seed=args.seed, shape=shape, polyadic=True)
    clefts = cleft_table(sample.clefts)
    edges = edge_table(
        sample.clefts, sample.segmentation, sample.partners, voxel_size_nm=sample.voxel_size_nm
    )
    print(f"{len(clefts)} clefts, {len(edges)} edges; first edge:")
    print(
        edges.iloc[0][
            ["cleft_segid", "presyn_segid", "postsyn_segid", "presyn_x", "presyn_y", "presyn_z"]
        ].to_string()
    )

    # A "prediction" that loses the smallest cleft and swaps one pre/post pair.
    smallest = int(clefts.loc[clefts["size"].idxmin(), "cleft_segid"])
    pred_clefts = np.where(sample.clefts == smallest, 0, sample.clefts)
    pred_partners = sample.partners.copy()
    first = pred_partners.index[0]
    pre, post = pred_partners.loc[first, ["pre_id", "post_id"]]
    pred_partners.loc[first, ["pre_id", "post_id"]] = [post, pre]

    print("clefts:", cleft_metrics(pred_clefts, sample.clefts).to_dict())
    print("assignment:", assignment_metrics(pred_partners, sample.partners).to_dict())


if __name__ == "__main__":
    main()

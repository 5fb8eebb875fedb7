"""AVAN assignment with a hand-built network whose outputs follow the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_avan.core.tables import edge_table
from napari_avan.models.assign import assign_cleft, edge_weights, iter_assign
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.device import plan
from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig
from napari_avan.types import AvanInputError

FP32 = plan("cpu", allow_bf16=False)
VOXEL = (40.0, 4.0, 4.0)


class BrightIsPre(nn.Module):
    """Pre where the image is bright, post where it is dark (a hand-built 'AVAN')."""

    def __init__(self) -> None:
        super().__init__()
        self.config = UNetConfig(in_channels=2, out_channels=2, widths=(4,), groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, :1]
        return torch.cat([20 * (image - 0.75), 20 * (0.25 - image)], dim=1)


def model(patch=(4, 32, 32)) -> LoadedModel:
    return LoadedModel(BrightIsPre(), {"voxel_size_nm": list(VOXEL), "patch": list(patch)})


def slabs(shape=(4, 64, 64)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four segments as slabs along x; a cleft on the 2|3 boundary; 2 bright, 3 dark."""
    seg = np.zeros(shape, np.uint32)
    for i in range(4):
        seg[:, :, 16 * i : 16 * (i + 1)] = i + 1
    clefts = np.zeros(shape, np.uint32)
    clefts[1:3, 20:40, 30:34] = 1
    image = np.full(shape, 128, np.uint8)
    image[seg == 2] = 250
    image[seg == 3] = 5
    return image, clefts, seg


def test_dyadic_partners_follow_the_image() -> None:
    image, clefts, seg = slabs()
    result = assign_cleft(model(), image, clefts, seg, VOXEL, 1, run=FP32)
    assert result.candidates.tolist() == [2, 3]  # 1 and 4 are beyond 40 nm
    assert result.edges == [(2, 3)]
    pre, post = result.score_of(2)
    assert pre > 0.9 and post < 0.1
    # swapping the image swaps the direction: the mask alone does not decide
    swapped = np.where(seg == 2, 5, np.where(seg == 3, 250, image)).astype(np.uint8)
    assert assign_cleft(model(), swapped, clefts, seg, VOXEL, 1, run=FP32).edges == [(3, 2)]


def test_polyadic_thresholds() -> None:
    shape = (3, 48, 48)
    seg = np.ones(shape, np.uint32)
    seg[:, 24:, :24] = 2
    seg[:, 24:, 24:] = 3
    clefts = np.zeros(shape, np.uint32)
    clefts[1, 22:26, 10:38] = 1  # along the pre (1) | posts (2, 3) boundary
    image = np.where(seg == 1, 250, 5).astype(np.uint8)
    result = assign_cleft(model(), image, clefts, seg, VOXEL, 1, run=FP32, polyadic=True)
    assert result.pre_ids == [1] and result.post_ids == [2, 3]
    assert sorted(result.edges) == [(1, 2), (1, 3)]
    none_above = assign_cleft(
        model(),
        image,
        clefts,
        seg,
        VOXEL,
        1,
        run=FP32,
        polyadic=True,
        pre_threshold=0.999,
        post_threshold=0.999,
    )
    assert none_above.pre_ids == [1]  # pre falls back to the argmax
    assert none_above.post_ids == []
    dyadic = assign_cleft(model(), image, clefts, seg, VOXEL, 1, run=FP32)
    assert dyadic.pre_ids == [1] and len(dyadic.post_ids) == 1 and dyadic.post_ids[0] in (2, 3)


def test_border_and_large_clefts_are_covered() -> None:
    image, clefts, seg = slabs((2, 64, 64))  # fewer sections than the patch: padded
    clefts[:] = 0
    clefts[0, 0:64, 30:34] = 1  # at the volume border and longer than a 32-voxel patch
    steps = list(iter_assign(model(), image, clefts, seg, VOXEL, run=FP32, batch_size=1))
    assert steps[-1].total > 1  # several patches for one cleft
    finished = [a for s in steps for a in s.finished]
    assert len(finished) == 1 and finished[0].edges == [(2, 3)]


def test_many_clefts_batched_and_edge_table() -> None:
    image, clefts, seg = slabs()
    clefts[1:3, 50:60, 14:18] = 2  # on the 1|2 boundary: 2 (bright) is pre, 1 is post
    steps = list(iter_assign(model(), image, clefts, seg, VOXEL, run=FP32, batch_size=8))
    assert len(steps) == 1  # both clefts in one batch
    found = {a.cleft_id: a.edges for a in steps[0].finished}
    assert found == {1: [(2, 3)], 2: [(2, 1)]}
    weights = edge_weights(steps[0].finished)
    partners = weights[["cleft_id", "pre_id", "post_id"]]
    table = edge_table(clefts, seg, partners, voxel_size_nm=VOXEL, weights=weights)
    by_cleft = {a.cleft_id: a for a in steps[0].finished}
    for row in table.itertuples():
        found_cleft = by_cleft[row.cleft_segid]
        assert row.presyn_wt == pytest.approx(found_cleft.score_of(row.presyn_segid)[0])
        assert row.postsyn_wt == pytest.approx(found_cleft.score_of(row.postsyn_segid)[1])
    # segment 1 is mid-grey: the argmax post of cleft 2, with a low post score
    assert table.set_index("cleft_segid").loc[2, "postsyn_wt"] < 0.1
    assert table.set_index("cleft_segid").loc[1, "postsyn_wt"] > 0.9


def test_bad_models_and_inputs() -> None:
    image, clefts, seg = slabs()
    detector = LoadedModel(ResidualSymmetricUNet(UNetConfig(widths=(4,), groups=2)), {})
    with pytest.raises(AvanInputError, match="not an AVAN model"):
        assign_cleft(detector, image, clefts, seg, VOXEL, 1, run=FP32)
    with pytest.raises(AvanInputError, match="no voxel"):
        assign_cleft(model(), image, clefts, seg, VOXEL, 9, run=FP32)
    with pytest.raises(AvanInputError, match="has shape"):
        assign_cleft(model(), image, clefts, seg[:, :10], VOXEL, 1, run=FP32)


def test_cli_assign_writes_an_edge_table(tmp_path) -> None:
    import pandas as pd

    from napari_avan.cli import main
    from napari_avan.core.synth import synthesize
    from napari_avan.core.tables import EDGE_COLUMNS
    from napari_avan.io import write_sample
    from napari_avan.models.checkpoint import save_model
    from napari_avan.models.networks import avan_config

    sample = synthesize(seed=2, shape=(6, 96, 96))
    data = write_sample(tmp_path / "s.zarr", sample)
    torch.manual_seed(0)
    net = ResidualSymmetricUNet(
        UNetConfig(**{**avan_config().to_dict(), "widths": (4, 8), "groups": 2})
    )
    folder = save_model(
        tmp_path / "avan",
        net,
        {"voxel_size_nm": [40, 8, 8], "patch": [4, 32, 32], "name": "tiny-avan"},
    )
    out = tmp_path / "edges.csv"
    args = [
        "assign",
        f"{data}:image",
        "--clefts",
        f"{data}:clefts",
        "--segmentation",
        f"{data}:segmentation",
        "--model",
        str(folder),
        "--out",
        str(out),
        "--quiet",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    edges = pd.read_csv(out)
    assert list(edges.columns) == list(EDGE_COLUMNS)
    n_clefts = int(sample.clefts.max())
    assert sorted(edges["cleft_segid"]) == list(range(1, n_clefts + 1))  # dyadic: one each
    assert (edges["presyn_segid"] != edges["postsyn_segid"]).all()
    assert set(edges["model"]) == {"tiny-avan"}
    assert edges["presyn_wt"].between(0, 1).all()
    assert main(args) == 2  # refuses to overwrite


class Shifted(BrightIsPre):
    """BrightIsPre plus a ramp along x: not symmetric under flips."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-4.0, 4.0, x.shape[-1])
        return super().forward(x) + ramp


def test_flip_tta_maps_outputs_back_onto_the_segments() -> None:
    image, clefts, seg = slabs()
    plain = assign_cleft(model(), image, clefts, seg, VOXEL, 1, run=FP32)
    (tta,) = [a for s in iter_assign(model(), image, clefts, seg, VOXEL, run=FP32,
                                     flip_tta=True) for a in s.finished]  # fmt: skip
    # a pointwise network is flip-symmetric: averaging the flips changes nothing
    np.testing.assert_allclose(tta.pre_scores, plain.pre_scores, atol=1e-5)
    np.testing.assert_allclose(tta.post_scores, plain.post_scores, atol=1e-5)
    shifted = LoadedModel(Shifted(), {"voxel_size_nm": list(VOXEL), "patch": [4, 32, 32]})
    one = assign_cleft(shifted, image, clefts, seg, VOXEL, 1, run=FP32)
    (four,) = [a for s in iter_assign(shifted, image, clefts, seg, VOXEL, run=FP32,
                                      flip_tta=True) for a in s.finished]  # fmt: skip
    assert not np.allclose(one.pre_scores, four.pre_scores), "the flips must run"


def test_the_numpy_parts_are_re_exported_from_core() -> None:
    import napari_avan.core.partners as core_partners
    import napari_avan.models.assign as assign

    for name in ("CleftAssignment", "decide_partners", "edge_weights"):
        assert getattr(assign, name) is getattr(core_partners, name)
    image, clefts, seg = slabs()
    result = assign_cleft(model(), image, clefts, seg, VOXEL, 1, run=FP32)
    assert isinstance(result, core_partners.CleftAssignment)
    # re-deciding from the stored scores gives the same partners
    again = core_partners.decide_partners(
        1, result.candidates, result.pre_scores, result.post_scores, False, 0.5, 0.5
    )
    assert (again.pre_ids, again.post_ids) == (result.pre_ids, result.post_ids)

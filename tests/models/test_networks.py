"""Networks and model files (docs/architecture.md, model folders), on tiny configurations."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_avan.models.checkpoint import META_FILE, WEIGHTS_FILE, load_model, save_model
from napari_avan.models.device import plan
from napari_avan.models.networks import (
    PrunerConfig,
    PrunerNet,
    ResidualSymmetricUNet,
    UNetConfig,
    avan_config,
    cleft_detector_config,
    fold_batchnorm,
)
from napari_avan.types import AvanInputError

TINY = (4, 8)


def tiny_unet(**kwargs) -> ResidualSymmetricUNet:
    torch.manual_seed(0)
    return ResidualSymmetricUNet(UNetConfig(widths=TINY, groups=2, **kwargs))


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 8, 24), (5, 32, 8)])
def test_unet_keeps_spatial_shape(shape: tuple[int, int, int]) -> None:
    net = tiny_unet(in_channels=2, out_channels=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 2, *shape))
    assert out.shape == (2, 3, *shape)


def test_unet_levels_and_anisotropy() -> None:
    config = UNetConfig(widths=(4, 8, 16), groups=2)
    net = ResidualSymmetricUNet(config)
    assert config.divisor == (1, 4, 4)
    assert net.input[0].kernel_size == (1, 5, 5)
    assert net.output.kernel_size == (1, 5, 5)
    assert net.pool.kernel_size == (1, 2, 2)
    # resize-convolution: a 1x1x1 convolution after a fixed upsampling
    assert all(up.conv.kernel_size == (1, 1, 1) for up in net.up)
    with pytest.raises(AvanInputError, match="multiple of 4"):
        net(torch.rand(1, 1, 2, 10, 16))
    with pytest.raises(AvanInputError, match="batch, 1"):
        net(torch.rand(1, 2, 2, 16, 16))


def test_unet_output_depends_on_far_context() -> None:
    """The deepest level sees beyond the input convolution's footprint (receptive field)."""
    net = tiny_unet().eval()
    x = torch.rand(1, 1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        base = net(x)[0, 0, 0, 16, 16]
        x[0, 0, 0, 16, 26] = 5.0  # 10 px away: outside a 5x5 kernel, inside the U
        moved = net(x)[0, 0, 0, 16, 16]
    assert not torch.isclose(base, moved)


def test_builders_follow_the_design() -> None:
    assert cleft_detector_config("mask").out_channels == 1
    assert cleft_detector_config("cleftnet").out_channels == 2
    avan = avan_config()
    detector = cleft_detector_config()
    assert (avan.in_channels, avan.out_channels) == (2, 2)
    assert avan.levels == detector.levels - 1
    with pytest.raises(AvanInputError, match="target"):
        cleft_detector_config("membranes")
    with pytest.raises(AvanInputError, match="norm"):
        UNetConfig(norm="layer")
    with pytest.raises(AvanInputError, match="groups"):
        UNetConfig(widths=(6, 12), norm="group", groups=4)
    with pytest.raises(AvanInputError, match="activation"):
        UNetConfig(act="gelu")
    batch = ResidualSymmetricUNet(UNetConfig(widths=TINY, norm="batch"))
    assert isinstance(batch.input[1], torch.nn.BatchNorm3d)
    assert isinstance(batch.input[2], torch.nn.ReLU)
    group = ResidualSymmetricUNet(UNetConfig(widths=TINY, norm="group", groups=2, act="elu"))
    assert isinstance(group.input[1], torch.nn.GroupNorm)
    assert isinstance(group.input[2], torch.nn.ELU)


def test_metadata_without_activation_means_elu() -> None:
    """Model files written before the activation option keep their ELU."""
    old = UNetConfig(widths=TINY, act="elu").to_dict()
    del old["act"]
    assert UNetConfig.from_dict(old).act == "elu"
    assert UNetConfig.from_dict(UNetConfig(widths=TINY).to_dict()).act == "relu"


def _with_running_statistics(net: torch.nn.Module) -> torch.nn.Module:
    """Train-mode passes on shifted, scaled inputs so every BatchNorm has non-trivial stats."""
    net.train()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, net.config.in_channels, 2, 16, 16, generator=generator) * 3 + 1)
    return net


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_folding_batchnorm_keeps_outputs_and_the_callers_network(norm: str) -> None:
    net = _with_running_statistics(tiny_unet(norm=norm, act="elu"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(1, 1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    folded = fold_batchnorm(net)
    assert net.training, "folding must not switch the caller's network to eval"
    net.eval()
    with torch.no_grad():
        expected, got = net(x), folded(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    if norm == "batch":
        assert folded is not net
        assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    else:
        assert folded is net  # nothing to fold: no copy


def test_run_plan_prepares_a_folded_copy_for_batchnorm() -> None:
    net = _with_running_statistics(tiny_unet())
    prepared = plan("cpu", allow_bf16=False).prepare(net)
    assert net.training
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in prepared.modules())
    assert not prepared.training


def test_pruner_gives_one_logit_per_candidate() -> None:
    net = PrunerNet(PrunerConfig(widths=(4, 8), hidden=8)).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 4, 3, 32, 32))
    assert out.shape == (3,)
    with pytest.raises(AvanInputError, match="batch, 4"):
        net(torch.rand(3, 2, 3, 32, 32))


# ----------------------------------------------------------------------------- model files


@pytest.mark.parametrize(
    "make", [tiny_unet, lambda: PrunerNet(PrunerConfig(widths=(4,), hidden=8))]
)
def test_save_load_round_trip(tmp_path: Path, make) -> None:
    net = make().eval()
    folder = save_model(tmp_path / "model", net, {"voxel_size_nm": [40, 4, 4], "steps": 3})
    loaded = load_model(folder)
    assert loaded.metadata["steps"] == 3
    assert loaded.metadata["voxel_size_nm"] == [40, 4, 4]
    x = torch.rand(2, net.config.in_channels, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x), net(x))
    # the weights file alone also finds its metadata
    assert load_model(folder / WEIGHTS_FILE).metadata == loaded.metadata


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m", tiny_unet())
    before = (folder / WEIGHTS_FILE).read_bytes()
    with pytest.raises(AvanInputError, match="exists"):
        save_model(folder, tiny_unet(out_channels=2))
    assert (folder / WEIGHTS_FILE).read_bytes() == before
    save_model(folder, tiny_unet(out_channels=2), overwrite=True)
    assert load_model(folder).network.config.out_channels == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporaries left


def test_corrupt_and_foreign_files_are_named(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m", tiny_unet())
    with pytest.raises(AvanInputError, match="is not a model"):
        load_model(tmp_path / "nothing")
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AvanInputError, match="sha256"):
        load_model(folder)
    with pytest.raises(AvanInputError, match="registry"):
        good = save_model(tmp_path / "g", tiny_unet())
        load_model(good, expected_sha256="0" * 64)
    (folder / META_FILE).write_text("{not json")
    with pytest.raises(AvanInputError, match="JSON"):
        load_model(folder)
    (folder / META_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(AvanInputError, match="napari-avan model"):
        load_model(folder)


def test_mismatched_architecture_is_named(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m", tiny_unet())
    meta = json.loads((folder / META_FILE).read_text())
    meta["architecture"]["config"]["widths"] = [4, 8, 16]
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(AvanInputError, match="does not fit the architecture"):
        load_model(folder)


class _Payload:
    """Unpickling this would run code: it must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m", tiny_unet())
    marker = tmp_path / "code-ran"
    torch.save({"weight": _Payload(marker)}, folder / WEIGHTS_FILE)
    meta = json.loads((folder / META_FILE).read_text())
    from napari_avan.models.checkpoint import sha256_of

    meta["weights_sha256"] = sha256_of(folder / WEIGHTS_FILE)  # passes the hash check
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(AvanInputError, match="refused"):
        load_model(folder)
    assert not marker.exists()


def test_unhashed_folder_is_refused_until_rehashed(tmp_path: Path) -> None:
    from napari_avan.models.checkpoint import rehash_model, sha256_of

    folder = save_model(tmp_path / "m", tiny_unet())
    meta = json.loads((folder / META_FILE).read_text())
    recorded = meta.pop("weights_sha256")
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(AvanInputError, match=r"no sha256 .*napari-avan model rehash"):
        load_model(folder)
    assert rehash_model(folder) == {"weights_sha256": recorded}
    assert load_model(folder).metadata["weights_sha256"] == sha256_of(folder / WEIGHTS_FILE)
    assert sorted(p.name for p in folder.iterdir()) == [META_FILE, WEIGHTS_FILE]


def test_rehash_refuses_weights_that_carry_code(tmp_path: Path) -> None:
    from napari_avan.models.checkpoint import rehash_model

    folder = save_model(tmp_path / "m", tiny_unet())
    marker = tmp_path / "code-ran"
    torch.save({"weight": _Payload(marker)}, folder / WEIGHTS_FILE)
    before = (folder / META_FILE).read_bytes()
    with pytest.raises(AvanInputError, match="refused"):
        rehash_model(folder)
    assert not marker.exists()
    assert (folder / META_FILE).read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable torch"),
        (b"\x00garbage" * 100, "not a readable torch|refused"),
        (pickle.dumps([1, 2, 3]), "refused|does not hold"),
    ],
    ids=["empty", "garbage", "plain-pickle"],
)
def test_load_tensors_names_every_damaged_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    from napari_avan.models.checkpoint import load_tensors

    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(AvanInputError, match=message):
        load_tensors(path, None, what="weights")
    with pytest.raises(AvanInputError, match="sha256"):
        load_tensors(path, "0" * 64, what="weights")


@pytest.mark.parametrize("name", ["cleft-detector", "proximity-pruner"])
def test_a_compact_copy_halves_the_weights_and_finds_the_same_clefts(
    tmp_path: Path, name: str
) -> None:
    from napari_avan.cli import main
    from napari_avan.core.metrics import cleft_metrics
    from napari_avan.core.synth import synthesize
    from napari_avan.models.checkpoint import BUNDLED_DIR, compact_model, resolve_model
    from napari_avan.models.detect import detect

    source = BUNDLED_DIR / name
    done = compact_model(source, tmp_path / "half")
    assert done["after"] < 0.55 * done["before"] and done["max_output_difference"] < 1e-2
    meta = json.loads((tmp_path / "half" / META_FILE).read_text())
    assert meta["weights_dtype"] == "float16"
    weights = [p.name for p in (tmp_path / "half").glob("*.pt")]
    assert sorted(weights) == sorted(p.name for p in source.glob("*.pt"))  # both files halved
    task = "cleft-detector" if name == "cleft-detector" else "proximity-pruner"
    half = resolve_model(tmp_path / "half", task)  # hashes verified on load
    assert all(p.dtype == torch.float32 for p in half.network.parameters())
    if name == "cleft-detector":  # the same clefts from the same volume
        s = synthesize(seed=9021, shape=(16, 128, 128))
        run = plan("cpu", allow_bf16=False)
        full = detect(resolve_model(name, task), s.image, s.voxel_size_nm, run=run)
        compact = detect(half, s.image, s.voxel_size_nm, run=run)
        assert full.clefts.max() > 0
        same = cleft_metrics(compact.clefts, full.clefts, iou_threshold=0.9)
        assert same.fp == same.fn == 0  # every cleft found again, nearly voxel for voxel
        differ = int(((compact.clefts > 0) != (full.clefts > 0)).sum())
        assert differ < 0.01 * int((full.clefts > 0).sum())  # voxels at the threshold
        change = np.abs(compact.prob - full.prob)
        assert float(change.mean()) < 1e-3 and float(change.max()) < 0.1
    with pytest.raises(AvanInputError, match="exists"):
        compact_model(source, tmp_path / "half")
    assert main(["model", "compact", str(source), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / WEIGHTS_FILE).is_file()

"""Samples with predictions (computed once, then cached), the edge-table writer and reader."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_avan._napari import _sample_cache, _sample_data
from napari_avan._napari._layers import synapse_points_layer
from napari_avan._napari._reader import EDGE_TABLE_REQUIRED, get_edges_reader
from napari_avan.types import AvanInputError

pytestmark = pytest.mark.gui

ID_COLUMNS = ["cleft_segid", "presyn_segid", "postsyn_segid"]
PREDICTED_NAMES = ["EM", "cleft probability", "segmentation", "clefts", "predicted clefts"]


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The polyadic predicted sample computed once (the detector takes seconds), its cache."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_sample_cache.CACHE_ENV, str(cache))
        layers = _sample_data.sample_polyadic_predicted()
    by_name = {kwargs["name"]: data for data, kwargs, _ in layers}
    (cache_file,) = cache.glob("*.npz")
    return SimpleNamespace(cache=cache, file=cache_file, layers=by_name)


def _fake_detector(predicted: SimpleNamespace, calls: list[int]):
    """A stand-in for the bundled detector that returns the cached answer and counts calls."""

    def run(sample):
        calls.append(1)
        prob = predicted.layers["cleft probability"]
        clefts = predicted.layers["predicted clefts"]
        from napari_avan.core.tables import cleft_table

        return SimpleNamespace(prob=prob, clefts=clefts, table=cleft_table(clefts, prob))

    return run


# --- samples with predictions -------------------------------------------------------------


def test_predicted_sample_through_napari(
    make_napari_viewer, monkeypatch: pytest.MonkeyPatch, predicted: SimpleNamespace
) -> None:
    monkeypatch.setenv(_sample_cache.CACHE_ENV, str(predicted.cache))
    calls: list[int] = []
    monkeypatch.setattr(_sample_data, "run_detector", _fake_detector(predicted, calls))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-avan", "synthetic-polyadic-predicted")
    assert calls == []  # served from the cache the fixture filled
    assert [layer.name for layer in viewer.layers] == PREDICTED_NAMES
    em, prob, seg, clefts, pred = (viewer.layers[n] for n in PREDICTED_NAMES)
    assert prob.__class__.__name__ == "Image" and pred.__class__.__name__ == "Labels"
    assert prob.data.dtype == np.float32 and pred.data.dtype == np.uint32
    assert prob.data.shape == pred.data.shape == em.data.shape == seg.data.shape
    for layer in (em, prob, seg, clefts, pred):
        assert tuple(layer.scale) == (40.0, 4.0, 4.0)
    assert 0.0 <= float(prob.data.min()) and float(prob.data.max()) <= 1.0
    np.testing.assert_array_equal(pred.data, predicted.layers["predicted clefts"])

    truth, found = np.asarray(clefts.data), np.asarray(pred.data)
    true_ids = np.unique(truth[truth > 0])
    hit = [i for i in true_ids if (found[truth == i] > 0).any()]
    assert len(hit) >= 0.8 * len(true_ids), f"{len(hit)} of {len(true_ids)} true clefts found"

    table = pred.metadata["cleft_table"]
    assert set(table["cleft_segid"]) == set(np.unique(found[found > 0]).tolist())
    assert {"size", "centroid_x", "score"} <= set(table.columns)
    # the ground truth is still there for comparison
    assert set(clefts.metadata["partners"]["cleft_id"]) == set(true_ids.tolist())


def test_dyadic_predicted_sample_is_registered() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    samples = {s.key: s for s in pm.get_manifest("napari-avan").contributions.sample_data or []}
    command = samples["synthetic-dyadic-predicted"].command
    assert command.endswith("sample_dyadic_predicted")
    assert callable(_sample_data.sample_dyadic_predicted)


def test_cache_file_is_keyed_by_sample_and_weights(predicted: SimpleNamespace) -> None:
    from napari_avan.models.checkpoint import bundled_models

    sha = bundled_models()["cleft-detector"]["sha256"]
    assert _sample_cache.detector_sha256() == sha
    name = predicted.file.name
    assert name.startswith(f"sample-polyadic-seed{_sample_data.POLYADIC_SEED}-")
    assert sha[:16] in name
    assert not [p for p in predicted.cache.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong shape"])
def test_corrupt_cache_is_recomputed_and_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, predicted: SimpleNamespace, damage: str
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(predicted.cache, cache)
    target = cache / predicted.file.name
    if damage == "garbage":
        target.write_bytes(b"not an npz file at all")
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        np.savez(target, format=np.asarray(1), prob=np.zeros((2, 2, 2), np.float32))
    monkeypatch.setenv(_sample_cache.CACHE_ENV, str(cache))
    calls: list[int] = []
    monkeypatch.setattr(_sample_data, "run_detector", _fake_detector(predicted, calls))

    layers = {kw["name"]: data for data, kw, _ in _sample_data.sample_polyadic_predicted()}
    assert calls == [1]
    np.testing.assert_array_equal(layers["predicted clefts"], predicted.layers["predicted clefts"])
    # the damaged file was replaced by a good one: the next open does not recompute
    _sample_data.sample_polyadic_predicted()
    assert calls == [1]
    assert [p.name for p in cache.iterdir()] == [predicted.file.name]


def test_unwritable_cache_only_warns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, predicted: SimpleNamespace
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setenv(_sample_cache.CACHE_ENV, str(blocker / "cache"))
    calls: list[int] = []
    monkeypatch.setattr(_sample_data, "run_detector", _fake_detector(predicted, calls))
    with pytest.warns(UserWarning, match="could not cache"):
        layers = _sample_data.sample_polyadic_predicted()
    assert calls == [1]
    assert [kw["name"] for _, kw, _ in layers] == PREDICTED_NAMES


def test_cache_folder_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(_sample_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert _sample_cache.cache_dir() == tmp_path / "home" / ".cache" / "napari-avan"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _sample_cache.cache_dir() == tmp_path / "xdg" / "napari-avan"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert _sample_cache.cache_dir() == tmp_path / "home" / ".cache" / "napari-avan"
    monkeypatch.setenv(_sample_cache.CACHE_ENV, str(tmp_path / "mine"))
    assert _sample_cache.cache_dir() == tmp_path / "mine"


# --- edge table writer and reader ---------------------------------------------------------


@pytest.fixture(scope="module")
def edges() -> pd.DataFrame:
    from napari_avan.core.synth import synthesize
    from napari_avan.core.tables import edge_table

    sample = synthesize(seed=3, shape=(8, 96, 96), polyadic=True)
    return edge_table(
        sample.clefts,
        sample.segmentation,
        sample.partners,
        voxel_size_nm=sample.voxel_size_nm,
        updated="2024-01-01T00:00:00+00:00",
    )


def test_edge_required_columns_are_edge_columns() -> None:
    from napari_avan.core.tables import EDGE_COLUMNS

    assert set(EDGE_TABLE_REQUIRED) <= set(EDGE_COLUMNS)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_edge_table_round_trip(
    make_napari_viewer, tmp_path: Path, edges: pd.DataFrame, suffix: str
) -> None:
    assert len(edges) > 1
    viewer = make_napari_viewer()
    data, kwargs, _ = synapse_points_layer(edges, (40.0, 4.0, 4.0))
    viewer.add_points(data, **kwargs)
    target = tmp_path / f"edges{suffix}"
    viewer.layers.save(str(target), selected=False, plugin="napari-avan")
    assert target.is_file()

    assert get_edges_reader(str(target)) is not None
    (layer,) = viewer.open(str(target), plugin="napari-avan")
    assert layer.__class__.__name__ == "Points"
    assert layer.metadata["napari_avan_kind"] == "edges"
    assert tuple(layer.scale) == (1.0, 1.0, 1.0)  # a table carries no voxel size
    back = layer.features
    assert list(back.columns) == list(edges.columns)
    for column in ID_COLUMNS:
        np.testing.assert_array_equal(back[column].to_numpy(), edges[column].to_numpy())
    np.testing.assert_allclose(np.asarray(layer.data), data)
    assert list(back["status"].astype(str)) == list(edges["status"].astype(str))


def test_edge_writer_never_overwrites(
    make_napari_viewer, tmp_path: Path, edges: pd.DataFrame
) -> None:
    import npe2

    viewer = make_napari_viewer()
    data, kwargs, _ = synapse_points_layer(edges, None)
    layer = viewer.add_points(data, **kwargs)
    target = tmp_path / "edges.csv"
    target.write_text("keep me\n")
    # npe2 (and napari's save dialog) pass the writer's error on ...
    with pytest.raises(AvanInputError, match="already exists"):
        npe2.write(str(target), [layer], plugin_name="napari-avan")
    # ... while napari's scripted save turns any ValueError into a warning
    with pytest.warns(UserWarning, match="napari-avan"):
        written = viewer.layers.save(str(target), selected=False, plugin="napari-avan")
    assert written == []
    assert target.read_text() == "keep me\n"


def test_non_edge_points_are_refused(make_napari_viewer, tmp_path: Path) -> None:
    import npe2

    viewer = make_napari_viewer()
    layer = viewer.add_points(np.zeros((2, 3)), features={"label": [1, 2]}, name="marks")
    target = tmp_path / "marks.csv"
    with pytest.raises(AvanInputError, match=r"'marks' is not an edge table.*cleft_segid"):
        npe2.write(str(target), [layer], plugin_name="napari-avan")
    assert not target.exists()


def test_edge_writer_keeps_empty_tables(make_napari_viewer, tmp_path: Path) -> None:
    from napari_avan.core.tables import empty_edge_table

    viewer = make_napari_viewer()
    data, kwargs, _ = synapse_points_layer(empty_edge_table(), None)
    viewer.add_points(data, **kwargs)
    target = tmp_path / "none.csv"
    viewer.layers.save(str(target), selected=False, plugin="napari-avan")
    (layer,) = viewer.open(str(target), plugin="napari-avan")
    assert len(layer.data) == 0
    assert set(EDGE_TABLE_REQUIRED) <= set(layer.features.columns)


def test_other_tables_are_left_to_other_readers(tmp_path: Path, edges: pd.DataFrame) -> None:
    partners = tmp_path / "partners.csv"
    pd.DataFrame({"cleft_id": [1], "pre_id": [2], "post_id": [3]}).to_csv(partners, index=False)
    napari_points = tmp_path / "points.csv"
    napari_points.write_text("index,axis-0,axis-1,axis-2\n0,1.0,2.0,3.0\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    no_centroid = tmp_path / "ids.tsv"
    edges[ID_COLUMNS].to_csv(no_centroid, sep="\t", index=False)
    for path in (partners, napari_points, binary, no_centroid, tmp_path / "missing.csv"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get_edges_reader(str(path)) is None, path
    assert get_edges_reader([str(partners), str(partners)]) is None

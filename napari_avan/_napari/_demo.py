"""``napari-avan demo``: the plugin in napari on the built-in synthetic sample."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_avan.types import AvanInputError

#: A file that marks a folder as written by the demo, so a rerun may replace it.
DEMO_MARKER = ".napari-avan-demo"


@dataclass
class DemoResult:
    """What the demo wrote."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        return [f"{name}: {path}" for name, path in self.files.items()]


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``, refusing to write into a non-empty folder the demo did not make."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise AvanInputError(f"{out_dir} is a file: give --out a folder")
        if any(out_dir.iterdir()) and not (out_dir / DEMO_MARKER).exists():
            raise AvanInputError(
                f"{out_dir} holds files the demo did not write: give --out an empty or new folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DEMO_MARKER).write_text("written by napari-avan demo; safe to delete\n")


def run_demo(out_dir: Path, *, headless: bool, seed: int = 1) -> DemoResult:
    """Generate the sample, write its outputs, and show it in napari.

    Args:
        out_dir: folder for the sample, tables and (headless) screenshot.
        headless: write a screenshot and close instead of opening a window
            (needs an X server, e.g. ``xvfb-run``).
        seed: seed of the synthetic sample (1: napari's polyadic sample).
    """
    from napari_avan.core.synth import synthesize
    from napari_avan.core.tables import cleft_table, edge_table
    from napari_avan.io import write_sample, write_table

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        raise AvanInputError(
            "no display: run 'xvfb-run -a napari-avan demo --headless' (or 'make demo')"
        )
    prepare_out_dir(out_dir)
    result = DemoResult(out_dir)
    sample = synthesize(seed=seed, polyadic=True)
    result.files["sample"] = write_sample(out_dir / "sample.zarr", sample, overwrite=True)
    clefts = cleft_table(sample.clefts)
    result.files["cleft table"] = write_table(clefts, out_dir / "clefts.csv", overwrite=True)
    edges = edge_table(
        sample.clefts,
        sample.segmentation,
        sample.partners,
        voxel_size_nm=sample.voxel_size_nm,
        status="accepted",
    )
    result.files["edge table (ground truth)"] = write_table(
        edges, out_dir / "edges.csv", overwrite=True
    )

    import napari

    viewer = napari.Viewer(title="napari-avan demo", show=True)
    viewer.window._qt_window.resize(1500, 950)
    # the sample with the bundled detector's predictions, and both widgets, all through npe2
    from napari_avan._napari._sample_data import POLYADIC_SEED, predicted_layers

    if seed == POLYADIC_SEED:
        viewer.open_sample("napari-avan", "synthetic-polyadic-predicted")
    else:
        for data, kwargs, layer_type in predicted_layers(True, seed):
            getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    viewer.window.add_plugin_dock_widget("napari-avan", "Detect clefts")
    _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    partners.reset_choices()
    predicted = viewer.layers["predicted clefts"]
    table = predicted.metadata.get("cleft_table")
    _focus_largest_cleft(viewer, table if table is not None else clefts)
    if headless:
        result.files.update(_click_and_assign(viewer, partners, out_dir))
        shot = out_dir / "demo.png"
        viewer.screenshot(str(shot), canvas_only=False, flash=False)
        result.files["screenshot"] = shot
        viewer.close()
    else:
        napari.run()
    return result


def _click_and_assign(viewer: Any, partners: Any, out_dir: Path) -> dict[str, Path]:
    """What a proofreader does first: assign the visible clefts, then click the largest."""
    from napari_avan._napari._gui_testing import cleft_world_point, process_events, wait_until
    from napari_avan.io import write_table

    partners.assign_viewport()
    wait_until(lambda: not partners.runner.busy, timeout=600)
    layer = partners.clefts.value
    section = round(float(layer.world_to_data(viewer.dims.point)[0]))
    ids, sizes = np.unique(np.asarray(layer.data[section]), return_counts=True)
    if ids.size > 1:
        cleft_id = int(ids[1:][np.argmax(sizes[1:])])
        partners.click(cleft_world_point(layer, cleft_id, section), None, [1, 2])
        wait_until(lambda: not partners.runner.busy, timeout=600)
    process_events(0.3)
    path = write_table(partners.edges_table(), out_dir / "predicted_edges.csv", overwrite=True)
    return {"predicted edge table (viewport)": path}


def _focus_largest_cleft(viewer: Any, clefts: pd.DataFrame) -> None:
    """Step to the section through the largest cleft's centroid."""
    if clefts.empty:
        return
    row = clefts.sort_values("size").iloc[-1]
    step = list(viewer.dims.current_step)
    step[0] = int(np.round(row["centroid_z"]))
    viewer.dims.current_step = tuple(step)
    viewer.reset_view()

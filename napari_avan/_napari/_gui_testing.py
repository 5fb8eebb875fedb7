"""Driving a real viewer as a user would: clicks on the canvas, waiting for workers.

Used by the tests, ``benchmarks/bench_gui.py`` and ``examples/screenshots.py``; it reaches
into napari's Qt viewer (private) to send the canvas the same mouse events a click makes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def open_sample_and_docks(viewer: Any) -> tuple[Any, Any]:
    """The polyadic sample and the Detect clefts and Partners docks, all through npe2."""
    viewer.open_sample("napari-avan", "synthetic-polyadic")
    _, detect = viewer.window.add_plugin_dock_widget("napari-avan", "Detect clefts")
    _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    partners.reset_choices()
    return detect, partners


def process_events(seconds: float = 0.0) -> None:
    """Let Qt deliver pending events (for ``seconds`` at least)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        raise RuntimeError("no Qt application: open a napari viewer first")
    end = time.perf_counter() + seconds
    while True:
        app.processEvents()
        if time.perf_counter() >= end:
            return
        time.sleep(0.002)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> float:
    """Process events until ``condition()`` holds; seconds waited.

    Raises:
        TimeoutError: the condition did not hold within ``timeout`` seconds.
    """
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        raise RuntimeError("no Qt application: open a napari viewer first")
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"gave up after {timeout:.0f} s")
        app.processEvents()
        time.sleep(0.002)
    return time.perf_counter() - start


def _vispy_canvas(viewer: Any) -> Any:
    return viewer.window._qt_viewer.canvas


def canvas_position(viewer: Any, world: Sequence[float]) -> tuple[float, float]:
    """Canvas pixel (x, y) where a world point is drawn (2D or 3D view)."""
    canvas = _vispy_canvas(viewer)
    view = canvas.view
    transform = view.transform * view.scene.transform
    displayed = list(viewer.dims.displayed)
    shown = [float(world[d]) for d in displayed][::-1]  # vispy is (x, y[, z])
    if len(shown) == 2:
        shown.append(0.0)
    mapped = np.asarray(transform.map([*shown, 1.0]), float)
    if mapped.size == 4 and mapped[3] not in (0.0, 1.0):
        mapped = mapped / mapped[3]  # perspective divide in 3D
    return float(mapped[0]), float(mapped[1])


def click_canvas(viewer: Any, world: Sequence[float], modifiers: Sequence[str] = ()) -> None:
    """Press and release the left button on the canvas over a world point, with
    ``modifiers`` held (``"Control"``, ``"Shift"``)."""
    from vispy.util import keys

    canvas = _vispy_canvas(viewer)._scene_canvas
    pos = canvas_position(viewer, world)
    held = tuple(getattr(keys, m.upper()) for m in modifiers)
    canvas.events.mouse_press(pos=pos, modifiers=held, button=1)
    canvas.events.mouse_release(pos=pos, modifiers=held, button=1)


def press_key(viewer: Any, key: str) -> None:
    """Press and release a key on the canvas as a user does: ``"a"``, ``"Control-z"``,
    ``"Control-Shift-z"`` (napari's names)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    *mods, name = key.split("-")
    held: Any = Qt.KeyboardModifier.NoModifier
    for mod in mods:
        held |= {"Control": Qt.KeyboardModifier.ControlModifier,
                 "Shift": Qt.KeyboardModifier.ShiftModifier}[mod]  # fmt: skip
    code = getattr(Qt.Key, f"Key_{name.upper()}")
    QTest.keyClick(_vispy_canvas(viewer).native, code, held)


def cleft_world_point(layer: Any, cleft_id: int, section: int | None = None) -> np.ndarray:
    """World coordinates of a voxel inside cleft ``cleft_id`` (on ``section`` if given),
    the one nearest the cleft's centre."""
    voxels = np.argwhere(np.asarray(layer.data) == cleft_id)
    if section is not None:
        voxels = voxels[voxels[:, 0] == section]
    if voxels.size == 0:
        raise ValueError(f"cleft {cleft_id} has no voxel there")
    centre = voxels.mean(axis=0)
    best = voxels[np.argmin(((voxels - centre) ** 2).sum(axis=1))]
    return np.asarray(layer.data_to_world(best), float)

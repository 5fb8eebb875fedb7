"""Review keys in a real viewer under Xvfb: real key presses through Qt to the canvas, with
each layer type selected, layers added later, and napari's own bindings back on release."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from napari_avan._napari._keys import ReviewKeys, normalise_key

pytestmark = pytest.mark.gui

#: The Proofread dock's keys, in napari's form.
KEYS = ("a", "r", "u", "n", "p", "s", "Control-z", "Control-Shift-z")


def _qt_key(key: str) -> tuple[Any, Any]:
    """The Qt key and modifiers a user presses for ``key``."""
    from qtpy.QtCore import Qt

    mods = Qt.KeyboardModifier.NoModifier
    *modifiers, letter = key.split("-")
    if "Control" in modifiers:
        mods |= Qt.KeyboardModifier.ControlModifier
    if "Shift" in modifiers:
        mods |= Qt.KeyboardModifier.ShiftModifier
    return getattr(Qt.Key, f"Key_{letter.upper()}"), mods


def press(viewer: Any, qtbot: Any, key: str) -> None:
    """Press and release ``key`` on the canvas widget, as the user's keyboard does."""
    qt_key, mods = _qt_key(key)
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, qt_key, mods)


def _review(viewer: Any) -> tuple[ReviewKeys, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(key: str) -> Callable[[], None]:
        return lambda: counts.update([key])

    return ReviewKeys(viewer, {key: count(key) for key in KEYS}), counts


def _add_layers(viewer: Any) -> dict[str, Any]:
    """One layer of each type napari binds letters on, with something in it."""
    return {
        "image": viewer.add_image(np.zeros((16, 16), dtype=np.uint8)),
        "labels": viewer.add_labels(np.zeros((16, 16), dtype=np.uint8)),
        "points": viewer.add_points(np.array([[2.0, 2.0], [5.0, 5.0], [9.0, 3.0]])),
        "shapes": viewer.add_shapes(np.array([[1.0, 1.0], [1.0, 6.0], [6.0, 6.0], [6.0, 1.0]])),
    }


def _select(viewer: Any, layer: Any) -> None:
    if layer is None:
        viewer.layers.selection.clear()
    else:
        viewer.layers.selection.active = layer
    assert viewer.layers.selection.active is layer


def _keymaps(viewer: Any) -> list[dict[Any, Any]]:
    return [dict(viewer.keymap), *(dict(layer.keymap) for layer in viewer.layers)]


def test_key_names_are_normalised_like_napari() -> None:
    assert normalise_key("Control-Shift-z") == normalise_key("Ctrl-Shift-Z")
    assert normalise_key("Control-Shift-z") == normalise_key("Shift-Control-Z")
    assert normalise_key("Control-z") != normalise_key("Control-Shift-z")
    with pytest.raises(ValueError, match="given twice"):
        ReviewKeys(None, {"Control-Shift-z": lambda: None, "Ctrl-Shift-Z": lambda: None})


@pytest.mark.parametrize("selected", [None, "image", "labels", "points", "shapes"])
def test_each_key_runs_once_per_press_whatever_is_selected(
    make_napari_viewer: Callable[..., Any], qtbot: Any, selected: str | None
) -> None:
    viewer = make_napari_viewer()
    layers = _add_layers(viewer)
    layer = None if selected is None else layers[selected]
    _select(viewer, layer)
    modes = {name: lay.mode for name, lay in layers.items()}
    labels_before = layers["labels"].data.copy()
    keys, counts = _review(viewer)
    keys.bind()
    assert keys.bound

    expected: Counter[str] = Counter()
    for _ in range(2):
        for key in KEYS:
            press(viewer, qtbot, key)
            expected[key] += 1
            assert counts == expected, (selected, key)

    # napari's own bindings for these letters did not run: no mode switch, no selection.
    assert {name: lay.mode for name, lay in layers.items()} == modes
    assert layers["points"].selected_data == set()
    assert layers["shapes"].selected_data == set()
    np.testing.assert_array_equal(layers["labels"].data, labels_before)
    keys.release()


def test_layer_added_after_bind_gets_the_keys(
    make_napari_viewer: Callable[..., Any], qtbot: Any
) -> None:
    viewer = make_napari_viewer()
    keys, counts = _review(viewer)
    keys.bind()

    labels = viewer.add_labels(np.zeros((16, 16), dtype=np.uint8))
    assert viewer.layers.selection.active is labels
    press(viewer, qtbot, "p")
    assert counts == Counter({"p": 1})
    assert labels.mode == "pan_zoom"

    points = viewer.add_points(np.array([[2.0, 2.0], [5.0, 5.0]]))
    assert viewer.layers.selection.active is points
    press(viewer, qtbot, "a")
    press(viewer, qtbot, "s")
    assert counts == Counter({"p": 1, "a": 1, "s": 1})
    assert points.selected_data == set()
    assert points.mode == "pan_zoom"

    # A layer removed while bound gets its own keymap back at once.
    viewer.layers.remove(points)
    assert points.keymap == {}
    keys.release()
    assert labels.keymap == {}


def test_release_gives_napari_and_earlier_bindings_back(
    make_napari_viewer: Callable[..., Any], qtbot: Any
) -> None:
    viewer = make_napari_viewer()
    layers = _add_layers(viewer)
    labels, points = layers["labels"], layers["points"]
    earlier: Counter[str] = Counter()
    # Bound before, spelt differently from the review keys.
    viewer.bind_key("U", lambda _viewer: earlier.update(["viewer u"]))
    viewer.bind_key("Ctrl-Shift-Z", lambda _viewer: earlier.update(["viewer redo"]))
    points.bind_key("s", lambda _layer: earlier.update(["points s"]))
    before = _keymaps(viewer)

    keys, counts = _review(viewer)
    keys.bind()
    assert _keymaps(viewer) != before
    _select(viewer, None)
    press(viewer, qtbot, "u")
    press(viewer, qtbot, "Control-Shift-z")
    _select(viewer, points)
    press(viewer, qtbot, "s")
    assert counts == Counter({"u": 1, "Control-Shift-z": 1, "s": 1})
    assert earlier == Counter()

    keys.release()
    assert not keys.bound
    assert _keymaps(viewer) == before
    counts.clear()

    # Labels: `p` is napari's paint mode again, Control-z / Control-Shift-z its undo / redo.
    _select(viewer, labels)
    assert labels.mode == "pan_zoom"
    press(viewer, qtbot, "p")
    assert labels.mode == "paint"
    labels.paint((8, 8), 3)
    painted = int((labels.data == 3).sum())
    assert painted > 0
    press(viewer, qtbot, "Control-z")
    assert int((labels.data == 3).sum()) == 0
    press(viewer, qtbot, "Control-Shift-z")
    assert int((labels.data == 3).sum()) == painted

    # Points: `a` selects all points in the slice (napari 0.9), `s` is the earlier binding.
    _select(viewer, points)
    assert points.selected_data == set()
    press(viewer, qtbot, "a")
    assert points.selected_data == {0, 1, 2}
    press(viewer, qtbot, "s")

    # Nothing selected: the viewer's earlier `u` and Control-Shift-z run again.
    _select(viewer, None)
    press(viewer, qtbot, "u")
    press(viewer, qtbot, "Control-Shift-z")

    assert earlier == Counter({"viewer u": 1, "viewer redo": 1, "points s": 1})
    assert counts == Counter()


def test_bind_and_release_twice_is_harmless(
    make_napari_viewer: Callable[..., Any], qtbot: Any
) -> None:
    viewer = make_napari_viewer()
    points = viewer.add_points(np.array([[2.0, 2.0], [5.0, 5.0]]))
    before = _keymaps(viewer)
    keys, counts = _review(viewer)

    keys.release()  # never bound: nothing to do
    assert not keys.bound
    assert _keymaps(viewer) == before

    for _ in range(2):
        keys.bind()
        keys.bind()
        assert keys.bound
        labels = viewer.add_labels(np.zeros((16, 16), dtype=np.uint8))
        press(viewer, qtbot, "a")
        press(viewer, qtbot, "Control-z")
        assert counts == Counter({"a": 1, "Control-z": 1})
        counts.clear()

        keys.release()
        keys.release()
        assert not keys.bound
        assert _keymaps(viewer) == [*before, {}]
        viewer.layers.remove(labels)

        _select(viewer, points)
        press(viewer, qtbot, "a")
        assert counts == Counter()
        assert points.selected_data == {0, 1}
        points.selected_data = set()

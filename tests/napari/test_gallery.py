"""The synapse gallery: pages, clicks, thumbnails rendered off the GUI thread, cleanup."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer

from napari_avan._napari._gallery import FAILED, PLACEHOLDER, SynapseGallery

pytestmark = pytest.mark.gui


def _coded(cleft_id: int) -> np.ndarray:
    """A tile whose colour tells which cleft (of ids below 64) it belongs to, even on a
    16-bit display (Xvfb's default here): channels 16 levels apart."""
    colour = ((cleft_id % 16) * 16, (cleft_id // 16) * 64, 128)
    return np.full((8, 8, 3), colour, dtype=np.uint8)


def _close(shown: tuple[int, int, int], expected: np.ndarray) -> bool:
    """Colours equal up to a 16-bit display's rounding."""
    return bool(np.abs(np.asarray(shown) - expected.astype(int)).max() <= 8)


class _Renderer:
    """A render function that sleeps, counts its calls and records its thread."""

    def __init__(self, delay: float = 0.0, fail: int | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, cleft_id: int) -> np.ndarray:
        with self.lock:
            self.calls.append(cleft_id)
            self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if cleft_id == self.fail:
            raise RuntimeError("boom")
        return _coded(cleft_id)


@pytest.fixture
def make_gallery(qtbot: Any) -> Iterator[Callable[..., SynapseGallery]]:
    made: list[SynapseGallery] = []

    def make(render: Callable[[int], np.ndarray], **kwargs: object) -> SynapseGallery:
        gallery = SynapseGallery(render, **kwargs)  # type: ignore[arg-type]
        qtbot.addWidget(gallery)
        gallery.show()
        made.append(gallery)
        return gallery

    yield make
    for gallery in made:  # no worker outlives its test
        gallery.stop()
        qtbot.waitUntil(lambda g=gallery: g.workers_alive == 0, timeout=10_000)


def _shown(gallery: SynapseGallery) -> list[int]:
    return [t.cleft_id for t in gallery.tiles if not t.isHidden() and t.cleft_id is not None]


def _all_rendered(gallery: SynapseGallery) -> bool:
    return all(t.has_thumbnail for t in gallery.tiles if not t.isHidden())


def _shows_its_own(gallery: SynapseGallery, cleft_id: int) -> bool:
    """Whether the tile of ``cleft_id`` shows that cleft's coded thumbnail."""
    tile = gallery.tile_for(cleft_id)
    assert tile is not None
    pixmap = tile.picture.pixmap()
    assert pixmap is not None and not pixmap.isNull()
    colour = pixmap.toImage().pixelColor(2, 2)
    return _close((colour.red(), colour.green(), colour.blue()), _coded(cleft_id)[0, 0])


def test_pages_of_30_hold_12_12_6(make_gallery: Callable[..., SynapseGallery], qtbot: Any) -> None:
    gallery = make_gallery(_Renderer(), status=lambda i: "pending")
    ids = list(range(101, 131))
    gallery.set_items(ids)
    assert gallery.page_count == 3 and gallery.page == 0
    assert _shown(gallery) == ids[:12]
    assert gallery.tiles[0].caption.text() == "#101  pending"
    assert not gallery.previous_button.isEnabled() and gallery.next_button.isEnabled()
    gallery.next_page()
    assert gallery.page == 1 and _shown(gallery) == ids[12:24]
    gallery.next_page()
    assert gallery.page == 2 and _shown(gallery) == ids[24:]
    assert len(_shown(gallery)) == 6
    assert sum(not t.isHidden() for t in gallery.tiles) == 6
    assert not gallery.next_button.isEnabled()
    gallery.next_page()  # past the end: stays
    assert gallery.page == 2
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=10_000)
    assert all(_shows_its_own(gallery, i) for i in ids[24:])
    gallery.previous_page()
    assert gallery.page == 1 and _shown(gallery) == ids[12:24]
    gallery.page = 0
    assert _shown(gallery) == ids[:12]
    # a shorter queue clamps the page
    gallery.page = 2
    gallery.set_items(ids[:5])
    assert gallery.page == 0 and gallery.page_count == 1 and _shown(gallery) == ids[:5]


def test_clicking_a_tile_emits_its_id_and_highlights_it(
    make_gallery: Callable[..., SynapseGallery], qtbot: Any
) -> None:
    gallery = make_gallery(_Renderer())
    gallery.set_items(list(range(1, 31)))
    gallery.next_page()
    tile = gallery.tiles[5]
    assert tile.cleft_id == 18
    with qtbot.waitSignal(gallery.tile_clicked, timeout=2000) as blocker:
        qtbot.mouseClick(tile, Qt.MouseButton.LeftButton)
    assert blocker.args == [18]
    assert gallery.selected == 18
    assert [t.selected for t in gallery.tiles] == [n == 5 for n in range(12)]
    # select() turns to the cleft's page and moves the highlight
    gallery.select(3)
    assert gallery.page == 0
    assert [t.cleft_id for t in gallery.tiles if t.selected] == [3]
    gallery.next_page()
    assert not any(t.selected for t in gallery.tiles)
    with pytest.raises(ValueError, match="not in the gallery"):
        gallery.select(99)
    # a right click picks nothing
    with qtbot.assertNotEmitted(gallery.tile_clicked, wait=50):
        qtbot.mouseClick(gallery.tiles[0], Qt.MouseButton.RightButton)


def test_rendering_never_stalls_the_gui_thread(
    make_gallery: Callable[..., SynapseGallery], qtbot: Any
) -> None:
    render = _Renderer(delay=0.06)  # 12 tiles: 0.7 s if they were rendered on the GUI thread
    gallery = make_gallery(render)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(30)
    gallery.set_items(list(range(1, 31)))
    assert all(t.picture.text() == PLACEHOLDER for t in gallery.tiles)
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=20_000)
    qtbot.wait(30)
    timer.stop()
    gaps = np.diff(ticks)
    assert len(ticks) > 20
    assert gaps.max() < 0.5, f"the GUI thread stalled {gaps.max() * 1000:.0f} ms"
    assert threading.get_ident() not in render.threads
    assert sorted(render.calls) == list(range(1, 13))
    assert all(_shows_its_own(gallery, i) for i in range(1, 13))


def test_changing_page_mid_render_drops_the_old_page(
    make_gallery: Callable[..., SynapseGallery], qtbot: Any
) -> None:
    render = _Renderer(delay=0.05)
    gallery = make_gallery(render)
    gallery.set_items(list(range(1, 31)))
    qtbot.waitUntil(lambda: any(t.has_thumbnail for t in gallery.tiles), timeout=10_000)
    done_before = len(render.calls)
    gallery.next_page()
    assert all(t.picture.text() == PLACEHOLDER for t in gallery.tiles)
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=20_000)
    qtbot.wait(150)
    old = [i for i in render.calls if i <= 12]
    assert len(old) <= done_before + 1 < 12  # the old page's worker stopped
    assert sorted(i for i in render.calls if i > 12) == list(range(13, 25))
    assert _shown(gallery) == list(range(13, 25))
    # every tile shows its own cleft's thumbnail, none of the old page's
    assert all(_shows_its_own(gallery, i) for i in range(13, 25))


def test_kept_thumbnails_are_not_rendered_again_until_invalidated(
    make_gallery: Callable[..., SynapseGallery], qtbot: Any
) -> None:
    render = _Renderer()
    gallery = make_gallery(render)
    gallery.set_items(list(range(1, 31)))
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=10_000)
    gallery.next_page()
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=10_000)
    calls = len(render.calls)
    gallery.previous_page()
    assert _all_rendered(gallery)  # at once, from the kept tiles
    assert len(render.calls) == calls and not gallery.rendering
    gallery.invalidate([2, 3])
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=10_000)
    assert sorted(render.calls[calls:]) == [2, 3]


def test_a_failing_render_marks_its_tile_only(
    make_gallery: Callable[..., SynapseGallery], qtbot: Any
) -> None:
    gallery = make_gallery(_Renderer(fail=4))
    gallery.set_items([1, 2, 3, 4, 5, 6])
    qtbot.waitUntil(lambda: gallery.workers_alive == 0, timeout=10_000)
    tile = gallery.tile_for(4)
    assert tile is not None and tile.picture.text() == FAILED
    assert "boom" in tile.picture.toolTip()
    others = [t for t in gallery.tiles if not t.isHidden() and t.cleft_id != 4]
    assert len(others) == 5 and all(t.has_thumbnail for t in others)


def test_close_stops_the_worker(make_gallery: Callable[..., SynapseGallery], qtbot: Any) -> None:
    render = _Renderer(delay=0.05)
    gallery = make_gallery(render)
    gallery.set_items(list(range(1, 13)))
    qtbot.waitUntil(lambda: len(render.calls) >= 2, timeout=10_000)
    assert gallery.rendering
    gallery.close()
    assert not gallery.rendering
    qtbot.waitUntil(lambda: gallery.workers_alive == 0, timeout=5_000)
    calls = len(render.calls)
    assert calls < 12
    qtbot.wait(200)
    assert len(render.calls) == calls  # nothing more rendered after the worker ended


def test_real_thumbnails_of_a_session_queue(
    make_gallery: Callable[..., SynapseGallery], qtbot: Any, tmp_path: Path
) -> None:
    from napari_avan.core.session.decisions import CleftRecord
    from napari_avan.core.session.session import Session
    from napari_avan.core.synth import synthesize
    from napari_avan.core.thumbnails import cleft_thumbnail

    sample = synthesize(seed=3, shape=(16, 128, 128))
    partners = sample.partners
    records = {
        int(c): CleftRecord(
            pre=tuple(int(i) for i in rows.pre_id.unique()),
            post=tuple(int(i) for i in rows.post_id.unique()),
        )
        for c, rows in partners.groupby("cleft_id")
    }
    session = Session.create(tmp_path / "s", sample.clefts, sample.voxel_size_nm, records=records)
    queue = session.review_queue()
    assert len(queue) >= 2

    def render(cleft_id: int) -> np.ndarray:
        r = session.records[cleft_id]
        return cleft_thumbnail(
            sample.image, sample.clefts, sample.segmentation, cleft_id, r.box, r.pre, r.post
        )

    gallery = make_gallery(render, status=lambda i: session.records[i].status)
    gallery.set_items(queue)
    qtbot.waitUntil(lambda: _all_rendered(gallery), timeout=20_000)
    for cleft_id in queue:
        tile = gallery.thumbnail(cleft_id)
        assert tile is not None and tile.shape == (96, 96, 3)
        np.testing.assert_array_equal(tile, render(cleft_id))
        shown = gallery.tile_for(cleft_id)
        assert shown is not None and shown.caption.text() == f"#{cleft_id}  pending"
        image = shown.picture.pixmap().toImage()  # 96 x 96: shown as rendered
        for y, x in [(0, 0), (48, 48), (10, 80), (95, 95)]:
            colour = image.pixelColor(x, y)
            assert _close((colour.red(), colour.green(), colour.blue()), tile[y, x])
        assert (tile == (255, 255, 0)).all(axis=-1).any()  # the cleft's outline
    session.apply({"action": "accept", "cleft": queue[0]})
    gallery.refresh_status()
    shown = gallery.tile_for(queue[0])
    assert shown is not None and shown.caption.text() == f"#{queue[0]}  accepted"

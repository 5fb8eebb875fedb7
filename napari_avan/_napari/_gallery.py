"""A paged gallery of cleft thumbnails, rendered off the GUI thread (Qt only, no viewer).

The gallery shows the clefts of a review queue a page at a time (4 x 3 tiles by default),
each tile the cleft's thumbnail with its id and status under it. Thumbnails come from a
``render(cleft_id) -> (h, w, 3) uint8`` callable (e.g. wrapping
:func:`napari_avan.core.thumbnails.cleft_thumbnail`) run in a superqt worker thread that
yields one tile at a time, so the GUI stays responsive; tiles show a placeholder until
theirs arrives. Changing page cancels the previous page's worker and ignores anything it
still sends. Rendered tiles are kept (a few pages' worth), so going back is instant; call
:meth:`SynapseGallery.invalidate` when clefts change.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QImage, QMouseEvent, QPixmap
from qtpy.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

#: What a tile shows until its thumbnail arrives, and when rendering it failed.
PLACEHOLDER = "rendering…"
FAILED = "no thumbnail"

_STYLE = "_Tile {{ border: 2px solid {}; border-radius: 3px; }}"
_SELECTED = "#ffd400"
_UNSELECTED = "transparent"


def _pixmap(tile: np.ndarray) -> QPixmap:
    """A QPixmap of an (h, w, 3) uint8 RGB array (copied: Qt keeps no numpy buffer)."""
    rgb = np.ascontiguousarray(tile, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a thumbnail is an (h, w, 3) RGB array, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    data = rgb.tobytes()  # alive until the copy below is made
    image = QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class _Tile(QFrame):
    """One cleft: its thumbnail (or a placeholder) over '#id  status'; click to pick it."""

    clicked = Signal(int)

    def __init__(self, size: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cleft_id: int | None = None
        self.selected = False
        self.has_thumbnail = False
        self.picture = QLabel(PLACEHOLDER)
        self.picture.setFixedSize(size, size)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setStyleSheet("background: #262930; color: #888;")
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(3, 3, 3, 3)
        layout.setSpacing(2)
        layout.addWidget(self.picture)
        layout.addWidget(self.caption)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setStyleSheet(_STYLE.format(_UNSELECTED))

    def show_item(self, cleft_id: int | None, status: str) -> None:
        """Show ``cleft_id`` (placeholder picture) or, with None, hide the tile."""
        self.cleft_id = cleft_id
        self.has_thumbnail = False
        self.picture.clear()
        self.picture.setText(PLACEHOLDER)
        self.picture.setToolTip("")
        self.set_status(status)
        self.setHidden(cleft_id is None)

    def set_status(self, status: str) -> None:
        text = "" if self.cleft_id is None else f"#{self.cleft_id}"
        self.caption.setText(f"{text}  {status}" if status and text else text)

    def show_thumbnail(self, tile: np.ndarray) -> None:
        pixmap = _pixmap(tile)
        size = self.picture.size()
        if pixmap.width() != size.width() or pixmap.height() != size.height():
            pixmap = pixmap.scaled(
                size,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation,
            )
        self.picture.setPixmap(pixmap)
        self.has_thumbnail = True

    def show_failure(self, reason: str) -> None:
        self.picture.clear()
        self.picture.setText(FAILED)
        self.picture.setToolTip(reason)
        self.has_thumbnail = False

    def set_selected(self, selected: bool) -> None:
        if selected == self.selected:
            return  # a style sheet costs a re-polish: only when it changes
        self.selected = selected
        self.setStyleSheet(_STYLE.format(_SELECTED if selected else _UNSELECTED))

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        if event is not None and event.button() == Qt.MouseButton.LeftButton:
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:
        if (
            event is not None
            and event.button() == Qt.MouseButton.LeftButton
            and self.cleft_id is not None
            and self.rect().contains(event.position().toPoint())
        ):
            event.accept()
            self.clicked.emit(self.cleft_id)
            return
        super().mouseReleaseEvent(event)


def _render_all(
    ids: Sequence[int], render: Callable[[int], np.ndarray]
) -> Generator[tuple[int, np.ndarray | None, str], None, None]:
    """Runs in the worker: each cleft's (id, tile, '') or (id, None, reason)."""
    for cleft_id in ids:
        try:
            tile = np.asarray(render(cleft_id))
        except Exception as err:  # one bad cleft must not stop the page
            yield cleft_id, None, f"{type(err).__name__}: {err}"
        else:
            yield cleft_id, tile, ""


class SynapseGallery(QWidget):
    """A paged grid of cleft thumbnails; click a tile to pick its cleft.

    Args:
        render: ``render(cleft_id)`` -> an (h, w, 3) uint8 RGB thumbnail; called in a
            worker thread, so it must only read arrays (never layers or widgets).
        status: ``status(cleft_id)`` -> the text under the tile (e.g. the record's
            status); called on the GUI thread. None: the id only.
        columns, rows: tiles per page.
        tile_size: the side of a thumbnail on screen, in pixels.
        cache_pages: pages' worth of rendered tiles kept.

    Signals:
        tile_clicked(int): a tile was clicked, with its cleft id.
        page_changed(int): the page shown now (from 0).
    """

    tile_clicked = Signal(int)
    page_changed = Signal(int)

    def __init__(
        self,
        render: Callable[[int], np.ndarray],
        *,
        status: Callable[[int], str] | None = None,
        columns: int = 4,
        rows: int = 3,
        tile_size: int = 96,
        cache_pages: int = 4,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        if columns < 1 or rows < 1:
            raise ValueError(f"a gallery page needs at least one tile, got {columns} x {rows}")
        self._render = render
        self._status = status
        self.columns, self.rows = int(columns), int(rows)
        self._items: list[int] = []
        self._page = 0
        self._selected: int | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_pages) * self.per_page
        self._worker: Any = None
        self._alive: set[Any] = set()  # workers started and not finished, stopped ones too

        grid = QGridLayout()
        grid.setSpacing(4)
        self.tiles: list[_Tile] = []
        for n in range(self.per_page):
            tile = _Tile(tile_size)
            tile.clicked.connect(self._on_tile_clicked)
            tile.show_item(None, "")
            grid.addWidget(tile, n // self.columns, n % self.columns)
            self.tiles.append(tile)
        self.previous_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.page_label = QLabel("")
        self.page_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.page_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.previous_button.clicked.connect(self.previous_page)
        self.next_button.clicked.connect(self.next_page)
        buttons = QHBoxLayout()
        buttons.addWidget(self.previous_button)
        buttons.addWidget(self.page_label)
        buttons.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self._show_page()

    # ------------------------------------------------------------------ items and pages

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    @property
    def items(self) -> list[int]:
        """The clefts shown, in queue order."""
        return list(self._items)

    def set_items(self, cleft_ids: Sequence[int]) -> None:
        """Show these clefts (queue order). The page stays where it was, within the new
        number of pages; the selection stays when its cleft still is listed."""
        self._items = [int(i) for i in cleft_ids]
        if self._selected is not None and self._selected not in self._items:
            self._selected = None
        self._page = min(self._page, self.page_count - 1)
        self._show_page()

    @property
    def page_count(self) -> int:
        return max(1, math.ceil(len(self._items) / self.per_page))

    @property
    def page(self) -> int:
        """The page shown (from 0); setting it shows that page (clamped)."""
        return self._page

    @page.setter
    def page(self, value: int) -> None:
        value = min(max(int(value), 0), self.page_count - 1)
        if value != self._page:
            self._page = value
            self._show_page()

    def next_page(self) -> None:
        self.page = self._page + 1

    def previous_page(self) -> None:
        self.page = self._page - 1

    def page_items(self) -> list[int]:
        """The clefts on the page shown."""
        start = self._page * self.per_page
        return self._items[start : start + self.per_page]

    def tile_for(self, cleft_id: int) -> _Tile | None:
        """The tile showing ``cleft_id`` on this page, or None."""
        for tile in self.tiles:
            if tile.cleft_id == cleft_id and not tile.isHidden():
                return tile
        return None

    # ------------------------------------------------------------------ selection

    @property
    def selected(self) -> int | None:
        return self._selected

    def select(self, cleft_id: int | None) -> None:
        """Highlight ``cleft_id``'s tile, turning to its page (None: no selection).

        Raises:
            ValueError: the cleft is not in the gallery.
        """
        if cleft_id is not None:
            cleft_id = int(cleft_id)
            if cleft_id not in self._items:
                raise ValueError(f"cleft {cleft_id} is not in the gallery")
        self._selected = cleft_id
        if cleft_id is not None:
            self.page = self._items.index(cleft_id) // self.per_page
        for tile in self.tiles:
            tile.set_selected(tile.cleft_id is not None and tile.cleft_id == cleft_id)

    def _on_tile_clicked(self, cleft_id: int) -> None:
        self.select(cleft_id)
        self.tile_clicked.emit(cleft_id)

    # ------------------------------------------------------------------ statuses, thumbnails

    def refresh_status(self) -> None:
        """Read every shown tile's status again (after a decision)."""
        for tile in self.tiles:
            if tile.cleft_id is not None:
                tile.set_status(self._status_of(tile.cleft_id))

    def invalidate(self, cleft_ids: Sequence[int] | None = None) -> None:
        """Forget the thumbnails of these clefts (None: all), rendering those shown again."""
        if cleft_ids is None:
            self._cache.clear()
        else:
            for cleft_id in cleft_ids:
                self._cache.pop(int(cleft_id), None)
        self._show_page()

    def thumbnail(self, cleft_id: int) -> np.ndarray | None:
        """The rendered thumbnail of ``cleft_id`` kept, or None."""
        return self._cache.get(int(cleft_id))

    @property
    def rendering(self) -> bool:
        """Whether a worker is rendering the page's thumbnails."""
        return self._worker is not None

    @property
    def workers_alive(self) -> int:
        """Workers still running, the page's and stopped ones finishing their last render."""
        return len(self._alive)

    def _status_of(self, cleft_id: int) -> str:
        if self._status is None:
            return ""
        try:
            return str(self._status(cleft_id))
        except (KeyError, LookupError):
            return "?"

    def _show_page(self) -> None:
        """Fill the tiles with this page's clefts and render those not kept."""
        self.stop()
        ids = self.page_items()
        for n, tile in enumerate(self.tiles):
            cleft_id = ids[n] if n < len(ids) else None
            tile.show_item(cleft_id, "" if cleft_id is None else self._status_of(cleft_id))
            tile.set_selected(cleft_id is not None and cleft_id == self._selected)
            kept = None if cleft_id is None else self._cache.get(cleft_id)
            if kept is not None:
                self._cache.move_to_end(cleft_id)  # type: ignore[arg-type]
                tile.show_thumbnail(kept)
        count = len(self._items)
        self.page_label.setText(
            f"page {self._page + 1}/{self.page_count}  ({count} cleft{'s' * (count != 1)})"
        )
        self.previous_button.setEnabled(self._page > 0)
        self.next_button.setEnabled(self._page < self.page_count - 1)
        missing = [i for i in ids if i not in self._cache]
        if missing:
            self._start(missing)
        self.page_changed.emit(self._page)

    def _start(self, ids: list[int]) -> None:
        from superqt.utils import create_worker

        worker = create_worker(_render_all, ids, self._render, _start_thread=False)

        def arrived(value: tuple[int, np.ndarray | None, str]) -> None:
            if self._worker is not worker:
                return  # a previous page's worker, or the gallery was closed
            try:
                self._arrived(*value)
            except RuntimeError:  # the widget was deleted without close()
                worker.quit()

        def finished(*_: Any) -> None:
            self._alive.discard(worker)
            if self._worker is worker:
                self._worker = None

        worker.yielded.connect(arrived)
        worker.finished.connect(finished)
        self._worker = worker
        self._alive.add(worker)
        worker.start()

    def _arrived(self, cleft_id: int, tile: np.ndarray | None, reason: str) -> None:
        shown = self.tile_for(cleft_id)
        if tile is None:
            if shown is not None:
                shown.show_failure(reason)
            return
        self._cache[cleft_id] = tile
        self._cache.move_to_end(cleft_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        if shown is not None:
            try:
                shown.show_thumbnail(tile)
            except ValueError as err:
                self._cache.pop(cleft_id, None)
                shown.show_failure(str(err))

    # ------------------------------------------------------------------ cleanup

    def stop(self) -> None:
        """Cancel the running worker; what it still sends is ignored (a render under way
        finishes in its thread, then the worker ends)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.quit()

    def close(self) -> bool:
        """Stop the worker and close the widget."""
        self.stop()
        return bool(super().close())

    def closeEvent(self, event: Any) -> None:
        self.stop()
        super().closeEvent(event)

"""A small line plot painted with QPainter (Qt only: no plotting library to depend on).

Docks draw a few short curves with it: a training run's loss per step and its validation
figures, or figures across bootstrapped rounds. Each line keeps its points in a plain list
(``plot.lines[name].points``), so tests read what is drawn without looking at pixels.
Lines are on one of two y axes: the left one spans the lines' own range (a loss), the
right one is fixed at 0 to 1 (F1, accuracy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Space around the plotting area, in pixels: left, top, right, bottom.
_MARGINS = (44, 20, 34, 18)
_AXIS_COLOR = "#8a8a8a"
_BACKGROUND = "#262930"  # napari's dark theme


@dataclass
class Line:
    """One curve: its colour, its y axis (``unit``: 0 to 1 on the right, else the left
    axis spanning the data), dots at its points or not, and its (x, y) points."""

    color: str
    unit: bool = False
    dots: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)


class LinePlot(QWidget):
    """Lines over a shared x axis, a legend on top, vertical marks (e.g. a phase start)."""

    def __init__(
        self, *, x_label: str = "", left_label: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.x_label = x_label
        self.left_label = left_label
        #: the lines by name, in legend order
        self.lines: dict[str, Line] = {}
        #: vertical marks: (x, text)
        self.marks: list[tuple[float, str]] = []
        #: what the plot says while it has no point
        self.empty_text = "nothing to show yet"
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(320, 150)

    # --- data ---------------------------------------------------------------------------

    def add_line(self, name: str, color: str, *, unit: bool = False, dots: bool = False) -> Line:
        """A new, empty line (or the one of that name)."""
        line = self.lines.setdefault(name, Line(color, unit, dots))
        self.update()
        return line

    def append(self, name: str, x: float, y: float) -> None:
        """One more point on line ``name``; non-finite values are skipped."""
        if math.isfinite(x) and math.isfinite(y):
            self.lines[name].points.append((float(x), float(y)))
            self.update()

    def mark(self, x: float, text: str) -> None:
        """A dashed vertical line at ``x`` labelled ``text``."""
        self.marks.append((float(x), text))
        self.update()

    def clear(self) -> None:
        """Every line emptied (the lines stay), the marks removed."""
        for line in self.lines.values():
            line.points.clear()
        self.marks.clear()
        self.update()

    # --- painting -----------------------------------------------------------------------

    def _ranges(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The x range and the left axis's y range, or None when there is no point."""
        xs = [x for line in self.lines.values() for x, _ in line.points]
        xs += [x for x, _ in self.marks]
        if not any(line.points for line in self.lines.values()):
            return None
        ys = [y for line in self.lines.values() if not line.unit for _, y in line.points]
        x_lo, x_hi = min(xs), max(xs)
        if x_hi - x_lo < 1e-9:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        if ys:
            y_lo, y_hi = min(0.0, min(ys)), max(ys)
            if y_hi - y_lo < 1e-9:
                y_hi = y_lo + 1
            y_hi += 0.05 * (y_hi - y_lo)
        else:
            y_lo, y_hi = 0.0, 1.0
        return (x_lo, x_hi), (y_lo, y_hi)

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.fillRect(self.rect(), QColor(_BACKGROUND))
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        left, top, right, bottom = _MARGINS
        area = QRectF(left, top, self.width() - left - right, self.height() - top - bottom)
        if area.width() < 10 or area.height() < 10:
            return
        metrics = QFontMetrics(painter.font())
        axis = QPen(QColor(_AXIS_COLOR))
        painter.setPen(axis)
        painter.drawRect(area)
        ranges = self._ranges()
        self._legend(painter, metrics)
        if ranges is None:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, self.empty_text)
            return
        (x_lo, x_hi), (y_lo, y_hi) = ranges

        def at(x: float, y: float, unit: bool) -> QPointF:
            lo, hi = (0.0, 1.0) if unit else (y_lo, y_hi)
            px = area.left() + (x - x_lo) / (x_hi - x_lo) * area.width()
            py = area.bottom() - (y - lo) / (hi - lo) * area.height()
            return QPointF(px, py)

        # axis labels: the left range, 0 and 1 on the right, the x range below
        h = metrics.height()
        painter.setPen(axis)
        align_r = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        align_l = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        if any(not line.unit for line in self.lines.values()):
            for value, y in ((y_hi, area.top()), (y_lo, area.bottom())):
                painter.drawText(QRectF(0, y - h / 2, left - 4, h), align_r, f"{value:.3g}")
            if self.left_label:
                mid = area.center().y()
                painter.drawText(QRectF(0, mid - h / 2, left - 4, h), align_r, self.left_label)
        if any(line.unit for line in self.lines.values()):
            for text, y in (("1", area.top()), ("0", area.bottom())):
                painter.drawText(QRectF(area.right() + 4, y - h / 2, right, h), align_l, text)
        below = QRectF(area.left(), area.bottom() + 1, area.width(), bottom)
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft, f"{x_lo:g}")
        painter.drawText(below, Qt.AlignmentFlag.AlignHCenter, self.x_label)
        painter.drawText(below, Qt.AlignmentFlag.AlignRight, f"{x_hi:g}")

        dashed = QPen(QColor(_AXIS_COLOR))
        dashed.setStyle(Qt.PenStyle.DashLine)
        for x, text in self.marks:
            point = at(x, 0, True)
            painter.setPen(dashed)
            painter.drawLine(QPointF(point.x(), area.top()), QPointF(point.x(), area.bottom()))
            painter.drawText(QPointF(point.x() + 3, area.top() + h), text)

        painter.setClipRect(area.adjusted(-4, -4, 4, 4))
        for line in self.lines.values():
            if not line.points:
                continue
            pen = QPen(QColor(line.color))
            pen.setWidthF(1.5)
            painter.setPen(pen)
            points = [at(x, y, line.unit) for x, y in line.points]
            path = QPainterPath(points[0])
            for point in points[1:]:
                path.lineTo(point)
            painter.drawPath(path)
            if line.dots or len(points) == 1:
                painter.setBrush(QColor(line.color))
                for point in points:
                    painter.drawEllipse(point, 2.5, 2.5)
                painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setClipping(False)

    def _legend(self, painter: QPainter, metrics: QFontMetrics) -> None:
        """The lines' names in their colours along the top (a line with points only)."""
        x = float(_MARGINS[0])
        for name, line in self.lines.items():
            if not line.points:
                continue
            painter.setPen(QColor(line.color))
            painter.drawText(QPointF(x, metrics.ascent() + 2), name)
            x += metrics.horizontalAdvance(name) + 12

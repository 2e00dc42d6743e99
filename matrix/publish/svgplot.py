"""Charts written as SVG text directly, for the charts drawn once per cell page (thousands on a big site), where
matplotlib took 35-400 ms a chart. Laid out like the matplotlib charts of `charts` (fixed margins in inches
at 72 pt, matplotlib's first colours); every text is XML-escaped, so record text stays inert. Deterministic.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")  # matplotlib's first colours
DASHES = ("", ' stroke-dasharray="6,3"', ' stroke-dasharray="6,2,1.5,2"', ' stroke-dasharray="2,2"')  # per series
FONT = "font-family:'DejaVu Sans','Bitstream Vera Sans',Arial,sans-serif"


def ticks(top: float) -> list[float]:
    """About five round tick values from 0 to at least `top` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def bars(labels: list[tuple[str, str]], series: dict[str, list[float | None]], outcomes: list[str], title: str,
         unit: str) -> bytes:
    """A grouped bar chart as SVG bytes, laid out like the matplotlib charts (fixed margins in inches at 72 pt):
    a bar per series and label, hatched and half transparent with the outcome written above where it is not
    'pass', two-line x labels, the y axis in `unit`, the legend outside on the right. Text is XML-escaped."""
    n, k = len(labels), len(series)
    width_in = 0.775 * max(4.0, 1.1 * n + 1.5)
    left, right, bottom, top_m, height = 54.0, 1.45 * 72, 0.45 * 72, 0.3 * 72, 2.45 * 72
    plot_w = width_in * 72
    total_w, total_h = left + plot_w + right, top_m + height + bottom
    bar = 0.8 / k
    lo, hi = -bar / 2 - 0.05 * (n - 1 + 0.8), n - 1 + bar * (k - 0.5) + 0.05 * (n - 1 + 0.8)
    peak = max((v for vs in series.values() for v in vs if v is not None), default=0.0)
    y_ticks = ticks(peak * 1.05)
    y_max = y_ticks[-1]

    def x(value: float) -> float:
        return left + (value - lo) / (hi - lo) * plot_w

    def y(value: float) -> float:
        return top_m + height - value / y_max * height

    out = ['<?xml version="1.0" encoding="utf-8" standalone="no"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.2f}pt" height="{total_h:.2f}pt" '
           f'viewBox="0 0 {total_w:.2f} {total_h:.2f}" version="1.1">',
           '<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6">'
           '<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="#000" stroke-width="1"/></pattern></defs>',
           f'<rect width="{total_w:.2f}" height="{total_h:.2f}" fill="#ffffff"/>',
           f'<g style="{FONT}">']
    for tick in y_ticks:
        ty = y(tick)
        out.append(f'<line x1="{left - 3.5:.2f}" x2="{left:.2f}" y1="{ty:.2f}" y2="{ty:.2f}" stroke="#000" '
                   f'stroke-width="0.8"/><text x="{left - 6:.2f}" y="{ty + 3:.2f}" font-size="9" '
                   f'text-anchor="end">{tick:g}</text>')
    for i, values in enumerate(series.values()):
        colour = COLOURS[i % len(COLOURS)]
        for j, (value, outcome) in enumerate(zip(values, outcomes)):
            if value is None:  # nothing measured: not a 0 MiB bar, a mark that says the run failed
                cx = x(j + i * bar)
                word = "failed" if outcome == "fail" else outcome
                out.append(f'<text transform="translate({cx + 3:.2f},{y(0) - 3:.2f}) rotate(-90)" font-size="8" '
                           f'fill="#c62828">✗ {escape(word)}</text>')
                continue
            x0, y0 = x(j + i * bar - bar / 2), y(value)
            w, h = x(j + i * bar + bar / 2) - x0, y(0) - y0
            rect = f'x="{x0:.2f}" y="{y0:.2f}" width="{w:.2f}" height="{h:.2f}"'
            if outcome == "pass":
                out.append(f'<rect {rect} fill="{colour}"/>')
                continue
            out.append(f'<g opacity="0.5"><rect {rect} fill="{colour}"/><rect {rect} fill="url(#hatch)"/></g>'
                       f'<text x="{x0 + w / 2:.2f}" y="{y0 - 2:.2f}" font-size="8" text-anchor="middle">'
                       f'{escape(outcome)}</text>')
    for j, (first, second) in enumerate(labels):
        cx = x(j + bar * (k - 1) / 2)
        out.append(f'<line x1="{cx:.2f}" x2="{cx:.2f}" y1="{y(0):.2f}" y2="{y(0) + 3.5:.2f}" stroke="#000" '
                   f'stroke-width="0.8"/><text x="{cx:.2f}" y="{y(0) + 12:.2f}" font-size="8" '
                   f'text-anchor="middle">{escape(first)}<tspan x="{cx:.2f}" dy="8.5">{escape(second)}</tspan>'
                   '</text>')
    out.append(f'<path d="M{left:.2f},{top_m:.2f} V{y(0):.2f} H{left + plot_w:.2f}" fill="none" stroke="#000" '
               f'stroke-width="0.8"/>')
    out += _titles(left, top_m, plot_w, height, title, unit)
    for i, name in enumerate(series):
        ly = top_m + 6 + i * 12
        out.append(f'<rect x="{left + plot_w + 6:.2f}" y="{ly:.2f}" width="14" height="5" '
                   f'fill="{COLOURS[i % len(COLOURS)]}"/><text x="{left + plot_w + 24:.2f}" y="{ly + 5:.2f}" '
                   f'font-size="8">{escape(name)}</text>')
    out.append("</g></svg>\n")
    return "\n".join(out).encode("utf-8")


def _titles(left: float, top_m: float, plot_w: float, height: float, title: str, y_label: str) -> list[str]:
    """The chart's title above the plot and its y label turned along the axis (both escaped)."""
    return [f'<text x="{left + plot_w / 2:.2f}" y="{top_m - 6:.2f}" font-size="10.8" text-anchor="middle">'
            f'{escape(title)}</text>',
            f'<text transform="translate({left - 38:.2f},{top_m + height / 2:.2f}) rotate(-90)" '
            f'font-size="9" text-anchor="middle">{escape(y_label)}</text>']


def _head(total_w: float, total_h: float) -> list[str]:
    return ['<?xml version="1.0" encoding="utf-8" standalone="no"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.2f}pt" height="{total_h:.2f}pt" '
            f'viewBox="0 0 {total_w:.2f} {total_h:.2f}" version="1.1">',
            f'<rect width="{total_w:.2f}" height="{total_h:.2f}" fill="#ffffff"/>', f'<g style="{FONT}">']


def lines(series: dict[str, list[tuple[float, float | None, str]]], title: str, y_label: str,
          x_label: str) -> bytes:
    """A line per series through (x, y, outcome) points, a circle where the outcome is 'pass' and a cross where it
    is not (a missing y sits on 0), and a dotted grey 'budget' line y = x * 1024 clipped at the top; the y axis
    ends at 1.25x the highest point, the legend sits outside on the right."""
    left, right, bottom, top_m, plot_w, height = 54.0, 1.3 * 72, 1.0 * 72, 0.3 * 72, 4.25 * 72, 2.45 * 72
    total_w, total_h = left + plot_w + right, top_m + height + bottom
    xs = sorted({x for points in series.values() for x, _, _ in points})
    peak = max((y for points in series.values() for _, y, _ in points if y), default=0.0)
    # room for the peak and for the smallest budget's own line
    y_ticks = ticks(max(peak * 1.25, xs[0] * 1024 * 1.1))
    y_max = max(peak * 1.25, xs[0] * 1024 * 1.1)
    y_ticks = [t for t in y_ticks if t <= y_max]
    pad = (xs[-1] - xs[0]) * 0.05 or 1.0
    lo, hi = xs[0] - pad, xs[-1] + pad

    def x(value: float) -> float:
        return left + (value - lo) / (hi - lo) * plot_w

    def y(value: float) -> float:
        return top_m + height - min(value, y_max) / y_max * height

    out = _head(total_w, total_h)
    for tick in y_ticks:
        out.append(f'<line x1="{left - 3.5:.2f}" x2="{left:.2f}" y1="{y(tick):.2f}" y2="{y(tick):.2f}" '
                   f'stroke="#000" stroke-width="0.8"/><text x="{left - 6:.2f}" y="{y(tick) + 3:.2f}" '
                   f'font-size="9" text-anchor="end">{tick:g}</text>')
    for tick in xs:
        out.append(f'<line x1="{x(tick):.2f}" x2="{x(tick):.2f}" y1="{y(0):.2f}" y2="{y(0) + 3.5:.2f}" '
                   f'stroke="#000" stroke-width="0.8"/><text x="{x(tick):.2f}" y="{y(0) + 13:.2f}" font-size="9" '
                   f'text-anchor="middle">{tick:g}</text>')
    for i, points in enumerate(series.values()):
        # identical series stay visible: earlier ones wider and dashed differently, later ones drawn on top
        colour, dash, width = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)], max(1.2, 4.0 - 1.2 * i)
        radius = max(2.0, 4.5 - 1.0 * i)
        path = " ".join(f"{x(px):.2f},{y(py):.2f}" for px, py, _ in points if py is not None)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{width:.1f}" '
                   f'opacity="0.8"{dash}/>')
        for px, py, outcome in points:
            # a run that measured nothing is not 0 MiB: its cross sits on a row of its own below the axis
            cx, cy = x(px), (y(0) + 22 + 5 * i) if py is None else y(py)
            if outcome == "pass":
                out.append(f'<circle cx="{cx:.2f}" cy="{cy:.2f}" r="{radius:.1f}" fill="{colour}"/>')
            else:
                out.append(f'<path d="M{cx - 3.5:.2f},{cy - 3.5:.2f} l7,7 m0,-7 l-7,7" stroke="{colour}" '
                           'stroke-width="2.5"/>')
    # the budget itself, y = budget in MiB, from one edge of the axis to the other (cut where it leaves the top)
    x_end = min(hi, y_max / 1024)
    out.append(f'<line x1="{x(max(lo, 0)):.2f}" y1="{y(max(lo, 0) * 1024):.2f}" x2="{x(x_end):.2f}" '
               f'y2="{y(x_end * 1024):.2f}" stroke="grey" stroke-width="1.5" stroke-dasharray="1.5,2.5"/>')
    out.append(f'<path d="M{left:.2f},{top_m:.2f} V{y(0):.2f} H{left + plot_w:.2f}" fill="none" stroke="#000" '
               'stroke-width="0.8"/>')
    out += _titles(left, top_m, plot_w, height, title, y_label)
    first, *more = x_label.split("\n")  # a second line explains the marks
    rest = "".join(f'<tspan x="{left + plot_w / 2:.2f}" dy="10">{escape(line)}</tspan>' for line in more)
    out.append(f'<text x="{left + plot_w / 2:.2f}" y="{y(0) + 48:.2f}" font-size="9" text-anchor="middle">'
               f'{escape(first)}{rest}</text>')
    names = [(name, COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]) for i, name in enumerate(series)]
    for i, (name, colour, dash) in enumerate(names + [("budget", "grey", ' stroke-dasharray="1.5,2.5"')]):
        ly = top_m + 8 + i * 12
        out.append(f'<line x1="{left + plot_w + 6:.2f}" x2="{left + plot_w + 20:.2f}" y1="{ly:.2f}" y2="{ly:.2f}" '
                   f'stroke="{colour}" stroke-width="1.5"{dash}/><text x="{left + plot_w + 24:.2f}" '
                   f'y="{ly + 2.5:.2f}" font-size="8">{escape(name)}</text>')
    out.append("</g></svg>\n")
    return "\n".join(out).encode("utf-8")

"""Charts for the site, drawn by matplotlib (Agg backend) as SVG bytes.

Each function takes rows of the tidy/latest frame and returns SVG bytes, or None when there is nothing to draw.
The output is deterministic (fixed hash salt, no date metadata) so unchanged data leaves the file unchanged.
"""

from __future__ import annotations

import hashlib
import io
import math
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from matrix.aggregate import version_key  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "bnb-matrix", "svg.fonttype": "none", "font.size": 9,
                     "axes.spines.top": False, "axes.spines.right": False})
OUTCOME_MARKERS = {"pass": ("o", "#2e7d32"), "fail": ("X", "#c62828"), "crash": ("X", "#6a1b9a"),
                   "timeout": ("X", "#ef6c00")}


def _svg(fig: plt.Figure, tight: bool = True) -> bytes:
    """The figure as SVG bytes. `tight` crops to the drawn content, which costs a second full draw; charts laid
    out with `_fixed_margins` skip it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buffer.getvalue()


def _fixed_margins(fig: plt.Figure, width: float, height: float, left: float, right: float, bottom: float,
                   top: float) -> None:
    """Size the figure to an axes area of width x height inches plus margins (inches) for labels, title and a
    legend on the right: the layout bbox_inches="tight" finds, without drawing the figure twice."""
    total_w, total_h = left + width + right, bottom + height + top
    fig.set_size_inches(total_w, total_h)
    fig.subplots_adjust(left=left / total_w, right=(left + width) / total_w, bottom=bottom / total_h,
                        top=(bottom + height) / total_h)


def _label(row: pd.Series) -> str:
    budget = f" @{row['budget']} GiB" if row["budget"] else ""
    return f"{row['recipe']}\n{row['shape']}{budget}"


def memory_by_recipe(rows: pd.DataFrame) -> bytes | None:
    """One cell: peak GPU memory at load and at forward per recipe x shape (CPU RSS on CPU runners), whole-card
    runs only when there are any (budgets have their own chart). Bars of runs that did not pass are hatched and
    labelled with their outcome. Written as SVG directly (`_bar_svg`): there is one per cell page, and matplotlib
    took 35-100 ms a chart, most of the site build at 100,000 records."""
    rows = rows[rows["outcome"] != "skip"]
    if (rows["budget"] == "").any():
        rows = rows[rows["budget"] == ""]
    gpu = ["mem_gpu_load_peak_mib", "mem_gpu_forward_peak_mib"]
    series = [c for c in gpu if c in rows and rows[c].notna().any()]
    if not series and "mem_cpu_peak_rss_mib" in rows and rows["mem_cpu_peak_rss_mib"].notna().any():
        series = ["mem_cpu_peak_rss_mib"]
    if rows.empty or not series:
        return None
    names = {"mem_gpu_load_peak_mib": "GPU peak at load", "mem_gpu_forward_peak_mib": "GPU peak at forward",
             "mem_cpu_peak_rss_mib": "CPU peak RSS"}
    values = {names[c]: pd.to_numeric(rows[c], errors="coerce").fillna(0).tolist() for c in series}
    labels = [(recipe, f"{shape} @{budget} GiB" if budget else shape)
              for recipe, shape, budget in zip(rows["recipe"], rows["shape"], rows["budget"])]
    return _bar_svg(labels, values, list(rows["outcome"]), "Peak memory by recipe", "MiB")


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # matplotlib's first colours, as the other charts use
_FONT = "font-family:'DejaVu Sans','Bitstream Vera Sans',Arial,sans-serif"


def _ticks(top: float) -> list[float]:
    """About five round tick values from 0 to at least `top` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _bar_svg(labels: list[tuple[str, str]], series: dict[str, list[float]], outcomes: list[str], title: str,
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
    peak = max((v for vs in series.values() for v in vs), default=0.0)
    ticks = _ticks(peak * 1.05)
    y_max = ticks[-1]

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
           f'<g style="{_FONT}">']
    for tick in ticks:
        ty = y(tick)
        out.append(f'<line x1="{left - 3.5:.2f}" x2="{left:.2f}" y1="{ty:.2f}" y2="{ty:.2f}" stroke="#000" '
                   f'stroke-width="0.8"/><text x="{left - 6:.2f}" y="{ty + 3:.2f}" font-size="9" '
                   f'text-anchor="end">{tick:g}</text>')
    for i, values in enumerate(series.values()):
        colour = _COLOURS[i % len(_COLOURS)]
        for j, (value, outcome) in enumerate(zip(values, outcomes)):
            x0, y0 = x(j + i * bar - bar / 2), y(value)
            w, h = x(j + i * bar + bar / 2) - x0, y(0) - y0
            rect = f'x="{x0:.2f}" y="{y0:.2f}" width="{w:.2f}" height="{h:.2f}"'
            if outcome == "pass":
                out.append(f'<rect {rect} fill="{colour}"/>')
                continue
            out.append(f'<g opacity="0.5"><rect {rect} fill="{colour}"/><rect {rect} fill="url(#hatch)"/></g>'
                       f'<text x="{x0 + w / 2:.2f}" y="{y0 - 2:.2f}" font-size="7" text-anchor="middle">'
                       f'{escape(outcome)}</text>')
    for j, (first, second) in enumerate(labels):
        cx = x(j + bar * (k - 1) / 2)
        out.append(f'<line x1="{cx:.2f}" x2="{cx:.2f}" y1="{y(0):.2f}" y2="{y(0) + 3.5:.2f}" stroke="#000" '
                   f'stroke-width="0.8"/><text x="{cx:.2f}" y="{y(0) + 12:.2f}" font-size="7" '
                   f'text-anchor="middle">{escape(first)}<tspan x="{cx:.2f}" dy="8.5">{escape(second)}</tspan>'
                   '</text>')
    out.append(f'<path d="M{left:.2f},{top_m:.2f} V{y(0):.2f} H{left + plot_w:.2f}" fill="none" stroke="#000" '
               f'stroke-width="0.8"/>')
    out.append(f'<text x="{left + plot_w / 2:.2f}" y="{top_m - 6:.2f}" font-size="10.8" text-anchor="middle">'
               f'{escape(title)}</text>')
    out.append(f'<text transform="translate({left - 38:.2f},{top_m + height / 2:.2f}) rotate(-90)" '
               f'font-size="9" text-anchor="middle">{escape(unit)}</text>')
    for i, name in enumerate(series):
        ly = top_m + 6 + i * 12
        out.append(f'<rect x="{left + plot_w + 6:.2f}" y="{ly:.2f}" width="14" height="5" '
                   f'fill="{_COLOURS[i % len(_COLOURS)]}"/><text x="{left + plot_w + 24:.2f}" y="{ly + 5:.2f}" '
                   f'font-size="7">{escape(name)}</text>')
    out.append("</g></svg>\n")
    return "\n".join(out).encode("utf-8")


def memory_by_budget(rows: pd.DataFrame) -> bytes | None:
    """One cell: peak GPU memory at load against the emulated VRAM budget, a line per recipe, the marker shows the
    outcome at that budget (circle pass, cross failed). None unless at least two budgets were measured."""
    rows = rows[(rows["budget"] != "") & (rows["outcome"] != "skip")]
    if rows["budget_gib"].nunique() < 2:  # one budget is a dot per recipe: the recipe chart says it better
        return None
    fig, ax = plt.subplots()
    _fixed_margins(fig, 4.25, 2.45, left=0.75, right=1.3, bottom=0.55, top=0.3)  # one per budgeted cell page
    for recipe, mine in rows.groupby("recipe", sort=True):
        mine = mine.sort_values("budget_gib")
        ys = pd.to_numeric(mine["mem_gpu_load_peak_mib"], errors="coerce")
        (line,) = ax.plot(mine["budget_gib"], ys, label=recipe, alpha=0.6)
        for x, y, outcome in zip(mine["budget_gib"], ys, mine["outcome"]):
            marker, _ = OUTCOME_MARKERS.get(outcome, ("X", "black"))
            ax.scatter([x], [0 if pd.isna(y) else y], marker=marker, color=line.get_color(), s=40, zorder=3)
    budgets = sorted(rows["budget_gib"].unique())
    top = pd.to_numeric(rows["mem_gpu_load_peak_mib"], errors="coerce").max()
    ax.plot(budgets, [b * 1024 for b in budgets], linestyle=":", color="grey", label="budget")
    if pd.notna(top) and top > 0:
        ax.set_ylim(0, top * 1.25)  # keep the data readable; the budget line is clipped where it runs above
    ax.set_xlabel("emulated VRAM budget (GiB); circle = pass, cross = failed")
    ax.set_ylabel("GPU peak at load (MiB)")
    ax.set_title("Peak GPU memory by VRAM budget")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig, tight=False)


def load_time_by_bnb(rows: pd.DataFrame) -> bytes | None:
    """One runner: load time of passing whole-card runs against the bitsandbytes version, a panel per shape and a
    line per recipe through the median over torch builds (each build's value is a faint dot). None unless at
    least two versions passed."""
    rows = rows[(rows["outcome"] == "pass") & (rows["budget"] == "") & rows["time_load_s"].notna()]
    if rows["bnb"].nunique() < 2:  # a single version is a dot, not a trend
        return None
    versions = sorted(rows["bnb"].unique(), key=version_key)
    position = {v: i for i, v in enumerate(versions)}
    rows = rows.assign(x=rows["bnb"].map(position), y=pd.to_numeric(rows["time_load_s"], errors="coerce"))
    shapes = sorted(rows["shape"].unique())
    fig, axes = plt.subplots(1, len(shapes), figsize=(max(4.5, 0.8 * len(versions) + 2) * len(shapes), 3.2),
                             squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        mine = rows[rows["shape"] == shape]
        for recipe, runs in mine.groupby("recipe", sort=True):
            median = runs.groupby("x")["y"].median().sort_index()
            (line,) = ax.plot(median.index, median.values, marker="o", label=recipe)
            ax.scatter(runs["x"], runs["y"], color=line.get_color(), alpha=0.25, s=12)
        ax.set_xticks(range(len(versions)))
        ax.set_xticklabels(versions, fontsize=7)
        ax.set_xlabel("bitsandbytes")
        ax.set_title(f"{shape}: load time (s), passing runs", fontsize=9)
    axes[0][0].set_ylabel("seconds (line: median over torch builds)")
    axes[0][-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


# ---------------------------------------------------------------------------------------- the chart cache
_CHARTS: dict[str, bytes | None] = {}
CHARTS_PER_WORKER = 16  # below this many charts to draw, a process pool costs more than it saves
CACHE_DIR = Path(__file__).resolve().parent.parent / "site" / "generated" / "charts"  # kept across builds
_CODE = hashlib.sha256(Path(__file__).read_bytes() + matplotlib.__version__.encode()).hexdigest()[:12]
STATS: Counter[str] = Counter()  # per build: direct (drawn without matplotlib), memory, disk (hits), drawn
_DIRECT = {memory_by_recipe}  # cheaper to draw than to hash their rows: never cached


def _select_budget(rows: pd.DataFrame) -> pd.DataFrame | None:
    rows = rows[(rows["budget"] != "") & (rows["outcome"] != "skip")]
    if rows["budget_gib"].nunique() < 2:
        return None
    return rows[["recipe", "budget", "budget_gib", "outcome", "mem_gpu_load_peak_mib"]]


def _select_load_time(rows: pd.DataFrame) -> pd.DataFrame | None:
    rows = rows[(rows["outcome"] == "pass") & (rows["budget"] == "") & rows["time_load_s"].notna()]
    if rows["bnb"].nunique() < 2:
        return None
    return rows[["recipe", "shape", "bnb", "budget", "outcome", "time_load_s"]]


# The rows (and columns) a matplotlib chart draws, or None when it draws nothing: the cache key is then exactly the
# chart's content, and hashing a few columns is cheap where the whole latest frame (about 80 columns) was not.
_SELECT: dict[Callable[[pd.DataFrame], bytes | None], Callable[[pd.DataFrame], pd.DataFrame | None]] = {
    memory_by_budget: _select_budget, load_time_by_bnb: _select_load_time}


def _chart_key(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> str:
    text = _CODE + draw.__name__ + rows.to_json(orient="split", date_format="iso")
    return hashlib.sha256(text.encode()).hexdigest()


def _from_disk(key: str) -> bytes | None | bool:
    """The SVG stored under `key` (b'' stands for None), or False when there is none."""
    try:
        data = (CACHE_DIR / f"{key[:2]}/{key}.svg").read_bytes()
    except OSError:
        return False
    return data or None


def _to_disk(key: str, svg: bytes | None) -> None:
    """Store a drawn chart; written to a temporary name and renamed, so a concurrent build never reads half."""
    path = CACHE_DIR / f"{key[:2]}/{key}.svg"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_bytes(svg or b"")
        os.replace(temp, path)
    except OSError:
        pass  # a read-only checkout still builds; it only draws every chart


def _lookup(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> tuple[str, bytes | None | bool]:
    key = _chart_key(draw, rows)
    if key in _CHARTS:
        STATS["memory"] += 1
        return key, _CHARTS[key]
    found = _from_disk(key)
    if found is not False:
        STATS["disk"] += 1
        _CHARTS[key] = found  # type: ignore[assignment]
    return key, found


def cached(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> bytes | None:
    """`draw(rows)`, remembered by content in memory (`mkdocs serve` regenerates in one process) and on disk under
    CACHE_DIR (a rebuild draws only the charts whose data or drawing code changed)."""
    if draw in _DIRECT:
        STATS["direct"] += 1
        return draw(rows)
    selected = _SELECT[draw](rows) if draw in _SELECT else rows
    if selected is None:
        return None
    key, svg = _lookup(draw, selected)
    if svg is False:
        if len(_CHARTS) > 4096:
            _CHARTS.clear()
        svg = _CHARTS[key] = draw(selected)
        STATS["drawn"] += 1
        _to_disk(key, svg)
    return svg  # type: ignore[return-value]


def _draw(job: tuple[Callable[[pd.DataFrame], bytes | None], pd.DataFrame]) -> bytes | None:
    return job[0](job[1])


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def draw_all(jobs: Iterable[tuple[Callable[[pd.DataFrame], bytes | None], pd.DataFrame]]) -> None:
    """Fill the chart cache for many (draw, rows) at once on every usable CPU. matplotlib draws one chart at a
    time in one thread, and a chart per cell was most of the render time of a big site (about 50 ms each).
    Forked workers inherit matplotlib's settings, so each SVG is byte-identical to one drawn here; where fork is
    unavailable or there is little to draw, nothing happens here and `cached` draws lazily as before."""
    todo: dict[str, tuple] = {}
    for draw, rows in jobs:
        selected = _SELECT[draw](rows) if draw in _SELECT else rows
        if draw in _DIRECT or selected is None:
            continue
        key, svg = _lookup(draw, selected)
        if svg is False:
            todo.setdefault(key, (draw, selected))
    workers = min(_usable_cpus(), len(todo) // CHARTS_PER_WORKER)
    if workers < 2 or sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return
    if len(_CHARTS) + len(todo) > 4096:
        _CHARTS.clear()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        chunk = max(1, len(todo) // (workers * 4))
        for key, svg in zip(todo, pool.map(_draw, todo.values(), chunksize=chunk)):
            _CHARTS[key] = svg
            STATS["drawn"] += 1
            _to_disk(key, svg)

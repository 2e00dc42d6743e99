"""Charts for the site as SVG bytes: the per-cell charts written directly (`svgplot`, thousands of them on a
big site), the per-runner chart drawn by matplotlib (Agg backend) and cached by content on disk (CACHE_DIR).

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
from typing import Any
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from matrix.publish import svgplot# noqa: E402
from matrix.publish.aggregate import version_key  # noqa: E402

# Legible at the size the pages show them: nothing under 8 pt. text.parse_math off: labels come from records, and
# "$x^$" in a recipe name must print as itself, not as (broken) math.
plt.rcParams.update({"svg.hashsalt": "bnb-matrix", "svg.fonttype": "none", "font.size": 10,
                     "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
                     "legend.fontsize": 9, "axes.spines.top": False, "axes.spines.right": False,
                     "text.parse_math": False, "text.usetex": False})
# Series that overlap stay apart by line style and marker as well as colour (and in grey print).
LINESTYLES = ("-", "--", "-.", ":")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P")
OUTCOME_MARKERS = {"pass": ("o", "#2e7d32"), "fail": ("X", "#c62828"), "crash": ("X", "#6a1b9a"),
                   "timeout": ("X", "#ef6c00")}
CELL_COLUMNS = ("recipe", "shape", "budget", "budget_gib", "outcome", "mem_gpu_load_peak_mib",
                "mem_gpu_forward_peak_mib", "mem_cpu_peak_rss_mib")  # what the per-cell charts read


def _svg(fig: plt.Figure) -> bytes:
    """The figure as SVG bytes, cropped to the drawn content."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _rows(rows: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chart rows as dicts: a frame's rows, or the rows themselves (the cell pages pass dicts: pandas' filtering
    cost more than drawing, about 5 ms a chart)."""
    return rows.to_dict(orient="records") if isinstance(rows, pd.DataFrame) else rows  # type: ignore[return-value]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    """A number, or None for a missing or non-numeric value (as pandas.to_numeric(errors="coerce"))."""
    if isinstance(value, bool) or not _present(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def memory_by_recipe(rows: pd.DataFrame | list[dict[str, Any]]) -> bytes | None:
    """One cell: peak GPU memory at load and at forward per recipe x shape (CPU RSS on CPU runners), whole-card
    runs only when there are any (budgets have their own chart). Bars of runs that did not pass are hatched and
    labelled with their outcome. Written as SVG directly (`_bar_svg`): there is one per cell page, and matplotlib
    took 35-100 ms a chart, most of the site build at 100,000 records."""
    rows = [r for r in _rows(rows) if r["outcome"] != "skip"]
    if any(r["budget"] == "" for r in rows):
        rows = [r for r in rows if r["budget"] == ""]
    gpu = ["mem_gpu_load_peak_mib", "mem_gpu_forward_peak_mib"]
    series = [c for c in gpu if any(_present(r.get(c)) for r in rows)]
    if not series and any(_present(r.get("mem_cpu_peak_rss_mib")) for r in rows):
        series = ["mem_cpu_peak_rss_mib"]
    if not rows or not series:
        return None
    names = {"mem_gpu_load_peak_mib": "GPU peak at load", "mem_gpu_forward_peak_mib": "GPU peak at forward",
             "mem_cpu_peak_rss_mib": "CPU peak RSS"}
    # a run that measured nothing stays None: the chart marks it failed instead of drawing a 0 MiB bar
    values = {names[c]: [_number(r.get(c)) for r in rows] for c in series}
    labels = [(r["recipe"], f"{r['shape']} @{r['budget']} GiB" if r["budget"] else r["shape"]) for r in rows]
    return svgplot.bars(labels, values, [r["outcome"] for r in rows], "Peak memory by recipe", "MiB")


def memory_by_budget(rows: pd.DataFrame | list[dict[str, Any]]) -> bytes | None:
    """One cell: peak GPU memory at load against the emulated VRAM budget, a line per recipe, the marker shows the
    outcome at that budget (circle pass, cross failed). None unless at least two budgets were measured. Written as
    SVG directly (`svgplot.lines`): one per budgeted cell page, and matplotlib took about 0.4 s a chart."""
    rows = [r for r in _rows(rows) if r["budget"] != "" and r["outcome"] != "skip"]
    if len({float(r["budget_gib"]) for r in rows if _present(r["budget_gib"])}) < 2:
        return None  # one budget is a dot per recipe: the recipe chart says it better
    lines = {}
    for recipe in sorted({r["recipe"] for r in rows if _present(r["recipe"])}):
        mine = sorted((r for r in rows if r["recipe"] == recipe), key=lambda r: float(r["budget_gib"]))
        lines[str(recipe)] = [(float(r["budget_gib"]), _number(r.get("mem_gpu_load_peak_mib")), str(r["outcome"]))
                              for r in mine]
    return svgplot.lines(lines, "Peak GPU memory by VRAM budget", "GPU peak at load (MiB)",
                         "emulated VRAM budget (GiB); circle = pass, cross = failed\n(crosses below the axis: failed "
                         "before any memory was measured)")


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
        for n, (recipe, runs) in enumerate(mine.groupby("recipe", sort=True)):
            median = runs.groupby("x")["y"].median().sort_index()
            (line,) = ax.plot(median.index, median.values, marker=SERIES_MARKERS[n % len(SERIES_MARKERS)],
                              linestyle=LINESTYLES[n % len(LINESTYLES)], label=recipe)
            ax.scatter(runs["x"], runs["y"], color=line.get_color(), alpha=0.25, s=12)
        ax.set_xticks(range(len(versions)))
        ax.set_xticklabels(versions, fontsize=8)
        ax.set_xlabel("bitsandbytes")
        ax.set_title(f"{shape}: load time (s), passing runs")
    axes[0][0].set_ylabel("seconds (line: median over torch builds)")
    axes[0][-1].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


# ---------------------------------------------------------------------------------------- the chart cache
_CHARTS: dict[str, bytes | None] = {}
CHARTS_PER_WORKER = 16  # below this many charts to draw, a process pool costs more than it saves
CACHE_DIR = Path(__file__).resolve().parents[2] / "site" / "generated" / "charts"  # kept across builds
_CODE = hashlib.sha256(Path(__file__).read_bytes() + matplotlib.__version__.encode()).hexdigest()[:12]
STATS: Counter[str] = Counter()  # per build: direct (drawn without matplotlib), memory, disk (hits), drawn
_DIRECT = {memory_by_recipe, memory_by_budget}  # cheaper to draw than to hash their rows: never cached


def _select_load_time(rows: pd.DataFrame) -> pd.DataFrame | None:
    rows = rows[(rows["outcome"] == "pass") & (rows["budget"] == "") & rows["time_load_s"].notna()]
    if rows["bnb"].nunique() < 2:
        return None
    return rows[["recipe", "shape", "bnb", "budget", "outcome", "time_load_s"]]


# The rows (and columns) a matplotlib chart draws, or None when it draws nothing: the cache key is then exactly the
# chart's content, and hashing a few columns is cheap where the whole latest frame (about 80 columns) was not.
_SELECT: dict[Callable[[pd.DataFrame], bytes | None], Callable[[pd.DataFrame], pd.DataFrame | None]] = {
    load_time_by_bnb: _select_load_time}


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

"""Charts for the site, drawn by matplotlib (Agg backend) as SVG bytes.

Each function takes rows of the tidy/latest frame and returns SVG bytes, or None when there is nothing to draw.
The output is deterministic (fixed hash salt, no date metadata) so unchanged data leaves the file unchanged.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from matrix.aggregate import version_key  # noqa: E402

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
    labelled with their outcome."""
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
    fig, ax = plt.subplots()
    # one chart per cell page, so it is drawn hundreds of times on a big site: fixed margins, no tight crop
    _fixed_margins(fig, 0.775 * max(4.0, 1.1 * len(rows) + 1.5), 2.45, left=0.75, right=1.85, bottom=0.5,
                   top=0.3)
    width = 0.8 / len(series)
    for i, column in enumerate(series):
        values = pd.to_numeric(rows[column], errors="coerce").tolist()
        xs = [x + i * width for x in range(len(rows))]
        # a run that measured nothing gets no bar (not a 0 MiB one): a "failed" mark stands in its place
        bars = ax.bar(xs, [0 if pd.isna(v) else v for v in values], width, label=names[column])
        for bar, value, outcome in zip(bars, values, rows["outcome"]):
            centre = bar.get_x() + bar.get_width() / 2
            if pd.isna(value):
                ax.annotate(f"✗ {outcome}ed" if outcome == "fail" else f"✗ {outcome}", (centre, 0), ha="center",
                            va="bottom", rotation=90, fontsize=8, color=OUTCOME_MARKERS.get(outcome, ("", "k"))[1])
            elif outcome != "pass":
                bar.set_hatch("//")
                bar.set_alpha(0.5)
                ax.annotate(outcome, (centre, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(rows))])
    ax.set_xticklabels([_label(r) for _, r in rows.iterrows()], fontsize=8)
    ax.set_ylabel("MiB")
    ax.set_title("Peak memory by recipe")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig, tight=False)


def memory_by_budget(rows: pd.DataFrame) -> bytes | None:
    """One cell: peak GPU memory at load against the emulated VRAM budget, a line per recipe, the marker shows the
    outcome at that budget (circle pass, cross failed). None unless at least two budgets were measured."""
    rows = rows[(rows["budget"] != "") & (rows["outcome"] != "skip")]
    if rows["budget_gib"].nunique() < 2:  # one budget is a dot per recipe: the recipe chart says it better
        return None
    fig, ax = plt.subplots()
    _fixed_margins(fig, 4.25, 2.45, left=0.8, right=1.4, bottom=0.8, top=0.3)  # one per budgeted cell page
    # x in data units, y in axes units: where a run that measured no memory is marked failed, below the data
    failed_row = ax.get_xaxis_transform()
    for n, (recipe, mine) in enumerate(rows.groupby("recipe", sort=True)):
        mine = mine.sort_values("budget_gib")
        ys = pd.to_numeric(mine["mem_gpu_load_peak_mib"], errors="coerce")
        # later series thinner, drawn on top, so identical series still show both
        (line,) = ax.plot(mine["budget_gib"], ys, label=recipe, alpha=0.8, linewidth=max(1.2, 4.0 - 1.2 * n),
                          linestyle=LINESTYLES[n % len(LINESTYLES)], zorder=2 + n)
        for x, y, outcome in zip(mine["budget_gib"], ys, mine["outcome"]):
            marker, _ = OUTCOME_MARKERS.get(outcome, ("X", "black"))
            if pd.isna(y):  # nothing measured: not 0 MiB, a cross on the failed row
                ax.scatter([x], [0.04 + 0.05 * n], marker="X", color=line.get_color(), s=40, zorder=3,
                           transform=failed_row, clip_on=False)
            else:
                ax.scatter([x], [y], marker=marker, color=line.get_color(), s=max(16, 70 - 22 * n), zorder=10 + n)
    top = pd.to_numeric(rows["mem_gpu_load_peak_mib"], errors="coerce").max()
    # the budget itself, across the whole axis (y = budget in MiB)
    ax.axline((0, 0), slope=1024, linestyle=":", color="grey", label="budget")
    budgets = sorted(rows["budget_gib"].unique())
    ax.set_xlim(0, budgets[-1] * 1.08)
    ax.set_ylim(0, max(top * 1.25 if pd.notna(top) else 0, budgets[0] * 1024 * 1.1))
    ax.set_xlabel("emulated VRAM budget (GiB); circle = pass, cross = failed\n(crosses at the bottom: failed "
                  "before any memory was measured)")
    ax.set_ylabel("GPU peak at load (MiB)")
    ax.set_title("Peak GPU memory by VRAM budget")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
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


def _chart_key(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> str:
    return hashlib.sha256((draw.__name__ + rows.to_json(orient="split", date_format="iso")).encode()).hexdigest()


def cached(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> bytes | None:
    """`draw(rows)`, remembered by content: drawing dominates render time, and `mkdocs serve` regenerates on every
    edit in the same process, so unchanged data is not drawn twice."""
    key = _chart_key(draw, rows)
    if key not in _CHARTS:
        if len(_CHARTS) > 4096:
            _CHARTS.clear()
        _CHARTS[key] = draw(rows)
    return _CHARTS[key]


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
        key = _chart_key(draw, rows)
        if key not in _CHARTS:
            todo.setdefault(key, (draw, rows))
    workers = min(_usable_cpus(), len(todo) // CHARTS_PER_WORKER)
    if workers < 2 or sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return
    if len(_CHARTS) + len(todo) > 4096:
        _CHARTS.clear()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        chunk = max(1, len(todo) // (workers * 4))
        for key, svg in zip(todo, pool.map(_draw, todo.values(), chunksize=chunk)):
            _CHARTS[key] = svg

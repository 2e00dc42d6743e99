"""Charts for the site, drawn by matplotlib (Agg backend) as SVG bytes.

Each function takes rows of the tidy/latest frame and returns SVG bytes, or None when there is nothing to draw.
The output is deterministic (fixed hash salt, no date metadata) so unchanged data leaves the file unchanged.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from matrix.aggregate import version_key  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "bnb-matrix", "svg.fonttype": "none", "font.size": 9,
                     "axes.spines.top": False, "axes.spines.right": False})
OUTCOME_MARKERS = {"pass": ("o", "#2e7d32"), "fail": ("X", "#c62828"), "crash": ("X", "#6a1b9a"),
                   "timeout": ("X", "#ef6c00")}


def _svg(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _label(row: pd.Series) -> str:
    budget = f" @{row['budget']} GiB" if row["budget"] else ""
    return f"{row['recipe']}\n{row['shape']}{budget}"


def memory_by_recipe(rows: pd.DataFrame) -> bytes | None:
    """One cell: peak GPU memory at load and at forward per recipe x shape x budget (CPU RSS on CPU runners).
    Bars of runs that did not pass are hatched and labelled with their outcome."""
    rows = rows[rows["outcome"] != "skip"]
    gpu = ["mem_gpu_load_peak_mib", "mem_gpu_forward_peak_mib"]
    series = [c for c in gpu if c in rows and rows[c].notna().any()]
    if not series and "mem_cpu_peak_rss_mib" in rows and rows["mem_cpu_peak_rss_mib"].notna().any():
        series = ["mem_cpu_peak_rss_mib"]
    if rows.empty or not series:
        return None
    names = {"mem_gpu_load_peak_mib": "GPU peak at load", "mem_gpu_forward_peak_mib": "GPU peak at forward",
             "mem_cpu_peak_rss_mib": "CPU peak RSS"}
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.2))
    width = 0.8 / len(series)
    for i, column in enumerate(series):
        values = pd.to_numeric(rows[column], errors="coerce").fillna(0).tolist()
        xs = [x + i * width for x in range(len(rows))]
        bars = ax.bar(xs, values, width, label=names[column])
        for bar, outcome in zip(bars, rows["outcome"]):
            if outcome != "pass":
                bar.set_hatch("//")
                bar.set_alpha(0.5)
                ax.annotate(outcome, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(rows))])
    ax.set_xticklabels([_label(r) for _, r in rows.iterrows()], fontsize=7)
    ax.set_ylabel("MiB")
    ax.set_title("Peak memory by recipe")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def memory_by_budget(rows: pd.DataFrame) -> bytes | None:
    """One cell: peak GPU memory at load against the emulated VRAM budget, a line per recipe, the marker shows the
    outcome at that budget (circle pass, cross failed)."""
    rows = rows[(rows["budget"] != "") & (rows["outcome"] != "skip")]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for recipe, mine in rows.groupby("recipe", sort=True):
        mine = mine.sort_values("budget_gib")
        ys = pd.to_numeric(mine["mem_gpu_load_peak_mib"], errors="coerce")
        (line,) = ax.plot(mine["budget_gib"], ys, label=recipe, alpha=0.6)
        for x, y, outcome in zip(mine["budget_gib"], ys, mine["outcome"]):
            marker, _ = OUTCOME_MARKERS.get(outcome, ("X", "black"))
            ax.scatter([x], [0 if pd.isna(y) else y], marker=marker, color=line.get_color(), s=40, zorder=3)
    budgets = sorted(rows["budget_gib"].unique())
    ax.plot(budgets, [b * 1024 for b in budgets], linestyle=":", color="grey", label="budget")
    ax.set_xlabel("emulated VRAM budget (GiB); circle = pass, cross = failed")
    ax.set_ylabel("GPU peak at load (MiB)")
    ax.set_title("Peak GPU memory by VRAM budget")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def load_time_by_bnb(rows: pd.DataFrame) -> bytes | None:
    """One runner: load time of passing whole-card runs against the bitsandbytes version, a line per
    torch build x recipe x shape."""
    rows = rows[(rows["outcome"] == "pass") & (rows["budget"] == "")]
    if rows.empty or rows["time_load_s"].isna().all():
        return None
    versions = sorted(rows["bnb"].unique(), key=version_key)
    position = {v: i for i, v in enumerate(versions)}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(versions) + 3), 3.4))
    for (torch, recipe, shape), mine in rows.groupby(["torch", "recipe", "shape"], sort=True):
        mine = mine.assign(x=mine["bnb"].map(position)).sort_values("x")
        ax.plot(mine["x"], pd.to_numeric(mine["time_load_s"], errors="coerce"), marker="o",
                label=f"{recipe} · {shape} · torch {torch}")
    ax.set_xticks(range(len(versions)))
    ax.set_xticklabels(versions)
    ax.set_xlabel("bitsandbytes")
    ax.set_ylabel("load time (s)")
    ax.set_title("Load time by bitsandbytes version (passing runs)")
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _svg(fig)

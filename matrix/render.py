"""Rendering: aggregates -> Markdown pages, charts and data files in a generated docs dir that mkdocs builds.

Every page comes from one Jinja template under site/templates/ (autoescape on) and one small function here that
gathers its context. Untrusted text (error messages, stderr) only reaches a page through `pre()`, which strips
ANSI escapes, caps the length and html-escapes it inside a raw `<pre><code>` block, so Markdown fences, `{{ }}`
and `<script>` in it stay inert. Record-derived words in tables go through `md()` (html-escaped, Markdown
specials as entities). Files are written only when their content changed; stale generated files are removed.
"""

from __future__ import annotations

import hashlib
import html
import json
import multiprocessing
import os
import posixpath
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from markupsafe import Markup

from matrix import charts, urls
from matrix.aggregate import BASELINE, CELL, FAILED, Aggregate, exports, version_key

SITE_DIR = Path(__file__).resolve().parent.parent / "site"
TEXT_LIMIT = 4000
VERDICT_LABELS = {"works": "works", "works-with-fix": "works with a fix", "fails": "fails",
                  "not-measured": "not measured"}
VERDICT_SYMBOLS = {"works": "✓", "works-with-fix": "fix", "fails": "✗", "not-measured": "–"}
PROFILE_BY_KIND = {"cpu": "cpu", "gpu": "cuda"}
CELL_CHARTS = {"memory.svg": "Peak memory by recipe", "budget.svg": "Peak GPU memory by VRAM budget"}

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INLINE = {c: f"&#{ord(c)};" for c in "\\`*_{}[]()#!|~<>&\"'"}


# ---------------------------------------------------------------------------------------------------- filters
def clean(text: Any, limit: int = TEXT_LIMIT, keep: str = "head") -> str:
    """Untrusted text made readable: ANSI escapes and control characters removed, at most `limit` characters
    (keeping the head or the tail) with a note saying how much was cut."""
    text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    text = _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep == "tail":
        return f"[... {cut} characters cut ...]\n" + text[-limit:]
    return text[:limit] + f"\n[... {cut} characters cut ...]"


def pre(text: Any, limit: int = TEXT_LIMIT, keep: str = "head") -> Markup:
    """Untrusted text as an inert raw-HTML code block, all on one Markdown line (newlines as entities) so no
    Markdown or template syntax inside it is ever interpreted."""
    body = html.escape(clean(text, limit, keep), quote=True).replace("\n", "&#10;")
    return Markup(f'<pre class="untrusted"><code>{body}</code></pre>')


def md(text: Any) -> Markup:
    """A word or phrase from a record, safe inline in Markdown (tables, headings, link text)."""
    return Markup("".join(_INLINE.get(c, c) for c in clean(text, 300).replace("\n", " ")))


def fence(text: str, lang: str = "") -> Markup:
    """A fenced code block longer than any backtick run in `text`, so the text cannot close it early."""
    runs = [len(m) for m in re.findall(r"`+", text)] or [0]
    ticks = "`" * max(3, max(runs) + 1)
    return Markup(f"{ticks}{lang}\n{text.rstrip()}\n{ticks}")


def num(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A number for a table: '' when missing, fixed decimals, optional sign."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if pd.isna(number):
        return ""
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def sci(value: Any) -> str:
    """A small number (relative error) in 2-significant-digit scientific-ish form."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if pd.isna(number) else f"{number:.2g}"


def peak_memory(row: dict[str, Any]) -> str:
    """Peak memory of a row for a table: 'load / forward' GPU MiB, or the CPU peak RSS on CPU runners."""
    load, forward = num(row.get("mem_gpu_load_peak_mib"), 0), num(row.get("mem_gpu_forward_peak_mib"), 0)
    if load or forward:
        return f"{load or '?'} / {forward or '?'}"
    rss = num(row.get("mem_cpu_peak_rss_mib"), 0)
    return f"{rss} RSS" if rss else ""


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def placement(value: Any) -> str:
    """The checks.placement JSON ({"cuda:0": 14, "cpu": 1}) as 'cuda:0 14, cpu 1'."""
    if not isinstance(value, str) or not value.startswith("{"):
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    try:
        # accelerate keeps offloaded modules on the meta device and streams their weights in at forward time
        return ", ".join(f"{'offloaded (meta)' if k == 'meta' else k} {v}" for k, v in json.loads(value).items())
    except json.JSONDecodeError:
        return value


# ----------------------------------------------------------------------------------------------- page helpers
def _dir(path: str) -> str:
    return path.rstrip("/") or "."


def rel_url(here: str, target: str) -> str:
    """Relative URL from the page at site path `here` to site path `target` (directory URLs end in '/')."""
    if target.endswith("/") or target == "":
        return posixpath.relpath(_dir(target), _dir(here)).replace("\\", "/") + "/"
    return posixpath.relpath(target, _dir(here))


def rel_file(here: str, target: str) -> str:
    """Relative Markdown file link (mkdocs checks these in --strict) from page `here` to site path `target`."""
    source = target + "index.md" if target.endswith("/") or target == "" else target
    return posixpath.relpath(source, _dir(here))


@pass_context
def _link(ctx: Any, target: str, text: Any) -> Markup:
    return Markup(f"[{md(text)}]({rel_file(ctx['here'], target)})")


@pass_context
def _url(ctx: Any, target: str) -> str:
    return rel_url(ctx["here"], target)


def environment(site_dir: Path = SITE_DIR) -> Environment:
    """The Jinja environment: templates from site/templates, autoescape on, strict undefined."""
    env = Environment(loader=FileSystemLoader(str(site_dir / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pre=pre, md=md, fence=fence, num=num, sci=sci, placement=placement)
    env.tests["safe_url"] = lambda text: bool(re.fullmatch(r"https?://[^\s()<>\[\]\"'`]+", str(text)))
    env.globals.update(link=_link, url=_url, plural=plural, VERDICT_LABELS=VERDICT_LABELS,
                       VERDICT_SYMBOLS=VERDICT_SYMBOLS, cell_path=urls.cell_path, error_path=urls.error_path,
                       fix_path=urls.fix_path, runner_path=urls.runner_path)
    return env


def python_literal(value: Any) -> str:
    """A value from the axes file as Python source: 'torch.float16' strings become the torch attribute."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return value if re.fullmatch(r"torch\.[a-z0-9_]+", value) else json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return repr(value)


def recipe_snippet(recipe: Any) -> str:
    """The Python a user would write for a recipe (its bnb_config and from_pretrained kwargs, env first)."""
    lines = [f"import os\nos.environ[{json.dumps(k)}] = {json.dumps(v)}" for k, v in sorted(recipe.env.items())]
    values = list(recipe.bnb_config.values()) + list(recipe.from_pretrained.values())
    uses_torch = any(isinstance(v, str) and v.startswith("torch.") for v in values)
    lines.append(("import torch\n" if uses_torch else "")
                 + "from transformers import AutoModelForCausalLM, BitsAndBytesConfig\n")
    config = ",\n    ".join(f"{k}={python_literal(v)}" for k, v in recipe.bnb_config.items())
    lines.append(f"quantization_config = BitsAndBytesConfig(\n    {config},\n)")
    kwargs = "".join(f"\n    {k}={python_literal(v)}," for k, v in recipe.from_pretrained.items())
    lines.append(f"model = AutoModelForCausalLM.from_pretrained(\n    model_id,\n"
                 f"    quantization_config=quantization_config,{kwargs}\n)")
    return "\n".join(lines)


def reproduce_command(runner_kind: str, torch: str, bnb: str) -> str:
    """The nox command that measures this cell again on a runner of the same kind."""
    profile = PROFILE_BY_KIND.get(str(runner_kind), str(runner_kind))
    return f"BNB_MATRIX_PROFILE={profile} nox -s \"probe(torch='{torch}', bnb='{bnb}')\""


def effect_sentence(recipe: str, effect: dict[str, Any] | None) -> str:
    """One plain sentence, from the numbers, saying whether a recipe changed anything against plain."""
    if not effect or not effect["pairs"]:
        return (f"Nothing measured yet: no cell has {recipe} and plain both measured on the same shape and "
                f"budget, so this page cannot say whether it changes anything.")
    gained, lost = effect["fail->pass"], effect["pass->fail"]
    answer = "Yes" if gained or lost else "No"
    text = (f"{answer}: in {plural(effect['cells'], 'cell')} ({plural(effect['pairs'], 'pairing')} of cell, shape "
            f"and budget), {recipe} turned {plural(gained, 'failure')} into passes and {plural(lost, 'pass', 'passes')}"
            f" into failures; {effect['both-pass']} passed both ways and {effect['both-fail']} failed both ways.")
    deltas = [(effect["median_delta_load_peak_mib"], "MiB of GPU peak memory at load", 0),
              (effect["median_delta_forward_peak_mib"], "MiB at forward", 0),
              (effect["median_delta_load_s"], "s of load time", 2)]
    parts = [f"{num(v, d, signed=True)} {what}" for v, what, d in deltas if not pd.isna(v)]
    if parts:
        text += " Where both passed, the median change against plain was " + ", ".join(parts) + "."
    return text


MULTI_GPU_SLUG = r"\d+x-"  # runner slugs of machines with several GPUs start with their count ("2x-h100-sm90")


def changed_errors(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Where plain and the recipe both failed but with different errors: (plain's, the recipe's, count)."""
    both = pairs[(pairs["change"] == "both-fail") & (pairs["plain_signature"] != pairs["signature"])]
    counts = both.groupby(["plain_signature", "signature"]).size()
    return [{"before": b, "after": a, "count": int(n)} for (b, a), n in counts.items()]


# ------------------------------------------------------------------------------------------------ the pages
@dataclass
class WriteReport:
    """What render_site did to the docs dir."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")


def _group_rows(frame: pd.DataFrame) -> dict[tuple, list[dict[str, Any]]]:
    """`_records(frame)` split per cell (CELL key), keeping the frame's row order within each cell."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in _records(frame):
        groups.setdefault(tuple(row[k] for k in CELL), []).append(row)
    return groups


def _runner_facts(agg: Aggregate) -> dict[str, dict[str, Any]]:
    """Per runner: the facts of its newest record, plus other values seen for any fact over time."""
    facts: dict[str, dict[str, Any]] = {}
    columns = [c for c in agg.frame.columns if c.startswith("runner_")]
    for slug, rows in agg.frame.groupby("runner", sort=True):
        newest = rows.sort_values(["time", "run_id"], kind="mergesort", na_position="first").iloc[-1]
        items = []
        for column in columns:
            value = newest[column]
            seen = sorted({str(v) for v in rows[column].dropna() if str(v) not in ("", "[]")} - {str(value)})
            if (value is None or (isinstance(value, float) and pd.isna(value)) or str(value) in ("", "[]")) \
                    and not seen:
                continue
            items.append({"name": column.removeprefix("runner_"), "value": value, "seen": seen})
        facts[slug] = {"slug": slug, "kind": newest["runner_kind"], "facts": items, "records": len(rows),
                       "first_seen": rows["date"].min(), "last_seen": rows["date"].max(),
                       "label": _runner_label(newest)}
    return facts


def _runner_label(row: Any) -> str:
    gpu = row.get("runner_gpu_name") if hasattr(row, "get") else ""
    if isinstance(gpu, str) and gpu:
        cc = row.get("runner_compute_capability") or ""
        return f"{gpu}" + (f", compute capability {cc}" if cc else "")
    cpu = row.get("runner_cpu_model") if hasattr(row, "get") else ""
    return cpu if isinstance(cpu, str) else ""


def _grid(verdicts: pd.DataFrame, extra_bnb: Iterable[str]) -> dict[str, Any]:
    """Heatmap grid of one runner: rows (torch, transformers), columns bnb versions, each a verdict row or None."""
    columns = sorted(set(verdicts["bnb"]) | set(extra_bnb), key=version_key)
    keys = sorted({(t, tf) for t, tf in zip(verdicts["torch"], verdicts["transformers"])},
                  key=lambda k: (version_key(k[0]), k[0], version_key(k[1])))
    by = {(r["torch"], r["transformers"], r["bnb"]): r for r in _records(verdicts)}
    rows = [{"torch": t, "transformers": tf, "cells": [by.get((t, tf, b)) for b in columns]} for t, tf in keys]
    return {"columns": columns, "rows": rows}


_CHARTS: dict[str, bytes | None] = {}
CHARTS_PER_WORKER = 16  # below this many charts to draw, a process pool costs more than it saves


def _chart_key(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> str:
    return hashlib.sha256((draw.__name__ + rows.to_json(orient="split", date_format="iso")).encode()).hexdigest()


def _chart(draw: Callable[[pd.DataFrame], bytes | None], rows: pd.DataFrame) -> bytes | None:
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


def draw_charts(jobs: Iterable[tuple[Callable[[pd.DataFrame], bytes | None], pd.DataFrame]]) -> None:
    """Fill the chart cache for many (draw, rows) at once on every usable CPU. matplotlib draws one chart at a
    time in one thread, and a chart per cell was most of the render time of a big site (about 50 ms each).
    Forked workers inherit matplotlib's settings, so each SVG is byte-identical to one drawn here; where fork is
    unavailable or there is little to draw, nothing happens here and `_chart` draws lazily as before."""
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


class Site:
    """Gathers each page's context from the aggregates and renders it; `files()` returns every output file."""

    def __init__(self, agg: Aggregate, axes: Any = None, catalogue: dict[str, Any] | None = None,
                 site_dir: Path = SITE_DIR) -> None:
        self.agg, self.axes, self.catalogue, self.site_dir = agg, axes, catalogue or {}, site_dir
        self.env = environment(site_dir)
        self.runners = _runner_facts(agg)
        self.recipes = dict(axes.recipes) if axes is not None else {}
        fix_pages = set(self.recipes) | set(agg.latest["recipe"])
        # Link only to pages that exist, whatever the catalogue or records name.
        self.env.globals.update(
            signatures=self.catalogue, known_error=lambda slug: slug if slug in self.catalogue else "unclassified",
            has_fix_page=lambda name: name in fix_pages)
        self.out: dict[str, bytes] = {}
        self._latest_by_cell = dict(tuple(agg.latest.groupby(CELL, sort=True))) if len(agg.latest) else {}
        # Rows as dicts, made once for the whole frame and split per cell: DataFrame.to_dict costs about the same
        # for 4 rows as for 10,000 (it walks every column), so once per cell page it dominated rendering.
        history = agg.frame.sort_values(CELL + ["time", "run_id", "recipe", "shape", "budget"],
                                        ascending=[True] * len(CELL) + [False, False, True, True, True],
                                        kind="mergesort")
        self._history_rows = _group_rows(history)  # per cell, newest first
        self._latest_rows = _group_rows(agg.latest)  # per cell, in KEY order
        self._passing: dict[tuple, set[str]] = {}  # (cell..., shape, budget) -> recipes that passed there
        for row in _records(agg.latest[agg.latest["outcome"] == "pass"]):
            self._passing.setdefault(tuple(row[k] for k in CELL + ["shape", "budget"]), set()).add(row["recipe"])

    _cell_charts = (charts.memory_by_recipe, charts.memory_by_budget)  # in CELL_CHARTS' order

    def _runner_rows(self, slug: str) -> pd.DataFrame:
        return self.agg.latest[self.agg.latest["runner"] == slug]

    def _chart_jobs(self) -> list[tuple[Callable[[pd.DataFrame], bytes | None], pd.DataFrame]]:
        """Every chart the pages will ask `_chart` for, with the same rows, so `draw_charts` can draw them first."""
        jobs = [(draw, latest) for latest in self._latest_by_cell.values() for draw in self._cell_charts]
        return jobs + [(charts.load_time_by_bnb, self._runner_rows(slug)) for slug in self.runners]

    def page(self, path: str, template: str, **context: Any) -> None:
        """Render `template` into the page at site path `path` ('' = home, 'cells/x/' = cells/x/index.md)."""
        text = self.env.get_template(template).render(here=path, **context)
        self.out[(path + "index.md") if path.endswith("/") or not path else path] = text.encode("utf-8")

    def files(self) -> dict[str, bytes]:
        self.hand_written()
        for name, data in exports(self.agg).items():
            self.out[f"data/{name}"] = data
        self.home()
        self.all_cells()
        draw_charts(self._chart_jobs())
        for cell in _records(self.agg.verdicts):
            self.cell(cell)
        self.fixes()
        self.runner_pages()
        self.budgets()
        self.errors()
        return dict(sorted(self.out.items()))

    # -- hand-written pages and assets are copied as they are
    def hand_written(self) -> None:
        for path in sorted(self.site_dir.glob("*.md")):
            if path.name != "index.md":
                self.out[path.name] = path.read_bytes()
        for path in sorted((self.site_dir / "assets").rglob("*")):
            if path.is_file():
                self.out[path.relative_to(self.site_dir).as_posix()] = path.read_bytes()

    def _last(self) -> dict[str, Any]:
        v = self.agg.verdicts
        return {"date": v["last_measured"].max() if len(v) else "", "cells": len(v),
                "records": len(self.agg.frame), "runners": len(self.runners),
                "problems": len(self.agg.problems)}

    def home(self) -> None:
        intro_path = self.site_dir / "index.md"
        intro = intro_path.read_text(encoding="utf-8") if intro_path.exists() else "# bnb-matrix\n"
        grids = []
        kinds_order = {"cpu": 0, "gpu": 1}
        for slug in sorted(self.runners, key=lambda s: (kinds_order.get(str(self.runners[s]["kind"]), 2), s)):
            mine = self.agg.verdicts[self.agg.verdicts["runner"] == slug]
            profile = PROFILE_BY_KIND.get(str(self.runners[slug]["kind"]))
            extra = self.axes.profiles[profile].bitsandbytes if self.axes and profile in self.axes.profiles else ()
            grids.append({"runner": self.runners[slug], "grid": _grid(mine, extra),
                          "last": mine["last_measured"].max() if len(mine) else ""})
        self.page("", "home.md.j2", intro=Markup(intro), grids=grids, last=self._last())

    def all_cells(self) -> None:
        self.page("cells/", "cells.md.j2", cells=_records(self.agg.verdicts), last=self._last())

    def cell(self, cell: dict[str, Any]) -> None:
        path = cell["cell_path"]
        key = tuple(cell[k] for k in CELL)
        history, latest_rows = self._history_rows[key], self._latest_rows[key]
        latest = self._latest_by_cell[key]
        newest = history[0]
        versions = {c.removeprefix("version_"): newest[c] for c in self.agg.frame.columns
                    if c.startswith("version_") and isinstance(newest[c], str) and newest[c]}
        charts_md = []
        for (name, alt), draw in zip(CELL_CHARTS.items(), self._cell_charts):
            svg = _chart(draw, latest)
            if svg:
                self.out[path + name] = svg
                charts_md.append({"file": name, "alt": alt})
        self.page(path, "cell.md.j2", cell=cell, rows=[dict(r, peak=peak_memory(r)) for r in latest_rows],
                  history=history, failures=[r for r in latest_rows if r["outcome"] in FAILED], versions=versions,
                  runner=self.runners[cell["runner"]], charts=charts_md,
                  command=reproduce_command(cell["runner_kind"], cell["torch"], cell["bnb"]))

    def fixes(self) -> None:
        effects = {r["recipe"]: r for r in _records(self.agg.effects)}
        names = sorted(set(self.recipes) | set(effects) | set(self.agg.latest["recipe"]),
                       key=lambda n: (n != BASELINE, n))
        items = []
        for name in names:
            recipe = self.recipes.get(name)
            pairs = self.agg.pairs[self.agg.pairs["recipe"] == name]
            own = self.agg.latest[self.agg.latest["recipe"] == name]
            effect = effects.get(name)
            sentence = effect_sentence(name, effect) if name != BASELINE else ""
            items.append({"name": name, "recipe": recipe, "effect": effect, "sentence": sentence})
            self.page(urls.fix_path(name), "fix.md.j2", name=name, recipe=recipe,
                      snippet=recipe_snippet(recipe) if recipe else "", effect=effect, sentence=sentence,
                      pairs=_records(pairs), own=_records(own), baseline=BASELINE,
                      rescued=self._rescued_by(name), changed_errors=changed_errors(pairs),
                      multi_gpu=_records(pairs[pairs["runner"].str.match(MULTI_GPU_SLUG)]))
        self.page("fixes/", "fixes.md.j2", items=items, baseline=BASELINE)

    def _rescued_by(self, recipe: str) -> list[dict[str, Any]]:
        """Signatures of plain's failures that this recipe turned into passes, with counts."""
        pairs = self.agg.pairs[(self.agg.pairs["recipe"] == recipe) & (self.agg.pairs["change"] == "fail->pass")]
        plain = self.agg.latest[self.agg.latest["recipe"] == BASELINE]
        hit = plain.merge(pairs[CELL + ["shape", "budget"]], on=CELL + ["shape", "budget"])
        counts = hit["signature"].map(lambda s: s if s in self.catalogue else "unclassified").value_counts()
        counts = counts.sort_index()
        return [{"slug": s, "count": int(c)} for s, c in counts.items()]

    def runner_pages(self) -> None:
        for slug, runner in self.runners.items():
            path = urls.runner_path(slug)
            chart = _chart(charts.load_time_by_bnb, self._runner_rows(slug))
            if chart:
                self.out[path + "load-time.svg"] = chart
            self.page(path, "runner.md.j2", runner=runner, chart=bool(chart),
                      cells=_records(self.agg.verdicts[self.agg.verdicts["runner"] == slug]))
        self.page("runners/", "runners.md.j2", runners=list(self.runners.values()))

    def budgets(self) -> None:
        """The VRAM budgets page: per cell and shape measured under emulated budgets, recipe x budget outcomes."""

        def label(budget: float | None) -> str | None:
            return f"{budget:g}" if budget else None

        blocks = []
        for key, mine in self.agg.latest.groupby(CELL + ["shape"], sort=True):
            budgeted = mine[mine["budget_gib"].notna()]
            if budgeted.empty:
                continue
            columns = [None] + sorted(float(b) for b in budgeted["budget_gib"].unique())
            table, smallest = [], []
            for recipe in sorted(mine["recipe"].unique(), key=lambda r: (r != BASELINE, r)):
                by_budget = {None if pd.isna(r["budget_gib"]) else float(r["budget_gib"]): r
                             for r in _records(mine[mine["recipe"] == recipe])}
                table.append({"recipe": recipe, "outcomes": [by_budget.get(c) for c in columns]})
                passed = [c for c in columns if c in by_budget and by_budget[c]["outcome"] == "pass"]
                if passed:
                    smallest.append({"recipe": recipe, "budget": label(min((c for c in passed if c), default=None))})
            blocks.append({**dict(zip(CELL + ["shape"], key)), "columns": [label(c) for c in columns],
                           "rows": table, "smallest": smallest, "cell_path": mine["cell_path"].iloc[0],
                           "last_seen": budgeted["last_seen"].max()})
        self.page("budgets/", "budgets.md.j2", blocks=blocks)

    def _evidence(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Rows where a signature occurred, each with the recipes that passed in the same cell, shape, budget."""
        where = CELL + ["shape", "budget"]
        out = []
        for row in _records(rows):
            passed = self._passing.get(tuple(row[k] for k in where), set())
            out.append(dict(row, passed_with=sorted(passed - {row["recipe"]})))
        return out

    def _fix_stats(self, hits: pd.DataFrame) -> dict[str, dict[str, int]]:
        """Per recipe, over the distinct (cell, shape, budget) where a signature occurred: passed, failed, not
        measured (missing or skipped)."""
        where = hits[CELL + ["shape", "budget"]].drop_duplicates()
        mine = self.agg.latest.merge(where, on=CELL + ["shape", "budget"])
        stats = {}
        for recipe in sorted(set(self.recipes) | set(self.agg.latest["recipe"])):
            rows = mine[mine["recipe"] == recipe]
            passed = int((rows["outcome"] == "pass").sum())
            failed = int(rows["outcome"].isin(FAILED).sum())
            stats[recipe] = {"situations": len(where), "passed": passed, "failed": failed,
                             "unmeasured": len(where) - passed - failed}
        return stats

    def errors(self) -> None:
        latest = self.agg.latest
        failed = latest[latest["outcome"].isin(FAILED)]
        slugs = sorted(set(self.catalogue) | {"unclassified"})
        index = []
        for slug in slugs:
            sig = self.catalogue.get(slug)
            if sig is not None and getattr(sig, "kind", "") == "warning":
                hits = latest[latest["warnings"].map(lambda ws, s=slug: s in str(ws).split()).astype(bool)]
            elif slug == "unclassified":
                hits = failed[failed["signature"].isin(["", "unclassified"])]
            else:
                hits = failed[failed["signature"] == slug]
            index.append({"slug": slug, "sig": sig, "count": len(hits),
                          "cells": int(hits[CELL].drop_duplicates().shape[0])})
            evidence = self._evidence(hits)
            self.page(urls.error_path(slug), "error.md.j2", slug=slug, sig=sig, evidence=evidence,
                      verbatim=slug == "unclassified", fix_stats=self._fix_stats(hits))
        self.page("errors/", "errors.md.j2", items=index)


def write_tree(files: dict[str, bytes], docs_dir: Path) -> WriteReport:
    """Make `docs_dir` hold exactly `files`: write a file only when its bytes changed (so `mkdocs serve` does
    not loop), remove files no longer produced, and leave everything else untouched."""
    report = WriteReport()
    docs_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = docs_dir / name
        if target.is_file() and target.read_bytes() == data:
            report.unchanged += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        report.written.append(name)
    for path in sorted(docs_dir.rglob("*"), reverse=True):
        name = path.relative_to(docs_dir).as_posix()
        if path.is_file() and name not in files:
            path.unlink()
            report.removed.append(name)
        elif path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path)
    return report


def load_catalogue() -> dict[str, Any]:
    """The signature catalogue from matrix.signatures, or {} while that module is not there."""
    try:
        from matrix import signatures
    except ImportError:
        return {}
    return dict(signatures.load_catalogue())


def render_site(agg: Aggregate, docs_dir: Path, axes: Any = None, catalogue: dict[str, Any] | None = None,
                site_dir: Path = SITE_DIR) -> WriteReport:
    """Render every page, chart and export of `agg` into `docs_dir` (see write_tree). `axes` (matrix.axes.Axes)
    gives recipe code and the declared versions; `catalogue` the error signatures (default: matrix.signatures)."""
    if catalogue is None:
        catalogue = load_catalogue()
    return write_tree(Site(agg, axes, catalogue, site_dir).files(), Path(docs_dir))

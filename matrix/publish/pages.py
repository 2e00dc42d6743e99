"""The pages mkdocs builds, as a list: for each kind of page its template, its nav entry and one context function.

A context function takes the `SiteData` (aggregates, findings, axes, catalogue) and yields `Page`s: a site path,
the template's context and any files that live next to it (charts). Adding a page is a context function here, a
template under site/templates/ and one `PageKind` in `PAGES`. Wording helpers the templates need (recipe code,
the reproduce command, the effect sentence) live here too; rendering and writing are `matrix.publish.render`'s.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from matrix import urls
from matrix.publish import badge, charts, findings, gpus as gpus_page, incremental, prequant, wayout
from matrix.diagnose import corpus
from matrix.measure import discover, runner
from matrix.predict import gpus as gpu_names, predict
from matrix.publish.aggregate import CELL, Aggregate
from matrix.measure.axes import Axes, load_axes
from matrix.publish.findings import records
from matrix.publish.reproduce import reproduce_command  # noqa: F401  (the name tests and callers use)

CELL_CHARTS = {"memory.svg": "Peak memory by recipe", "budget.svg": "Peak GPU memory by VRAM budget"}
_CELL_DRAWS = (charts.memory_by_recipe, charts.memory_by_budget)  # in CELL_CHARTS' order
OWN_COLUMNS = CELL + ["recipe", "shape", "budget", "outcome", "flaky", "time_load_s", "mem_gpu_load_peak_mib",
                      "last_seen", "cell_path"]  # a fix page's table of its own results
HAND_WRITTEN_NAV = (("Data", "data/index.md"), ("Records", "records/index.md"), ("Axes", "axes/index.md"))  # site/*.md


@dataclass
class Page:
    """One generated page: its site path ('' = home, 'cells/x/'), its template context, files next to it."""

    path: str
    context: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class SiteData:
    """What every context function reads: the aggregates, the findings over them, the axes and the catalogue."""

    agg: Aggregate
    axes: Axes
    catalogue: dict[str, Any]
    baseline: str
    recipes: dict[str, Any]
    found: findings.Findings
    intro: str = "# bnb-matrix\n"  # the home page's hand-written Markdown (site/index.md)

    @classmethod
    def of(cls, agg: Aggregate, axes: Axes | None, catalogue: dict[str, Any],
           intro: str = "# bnb-matrix\n") -> SiteData:
        """The site data of `agg`; `axes` default to the default axes file."""
        axes = axes or load_axes()
        recipes = {n: r for n, r in axes.recipes.items() if not r.kind}  # prequantized: publish/prequant.py
        in_axes = {package: discover.axes_versions(axes, package) for package in discover.PACKAGES}
        return cls(agg, axes, catalogue, axes.baseline, recipes,
                   findings.compute(agg, recipes, axes.baseline, catalogue, in_axes), intro)

    def __post_init__(self) -> None:
        # the cell pages (matrix/publish/cellsite.py) build their own rows column-wise, for changed cells only
        self.passing = findings.passing(self.agg.latest)
        self.cells_by_path = {c["cell_path"]: c for c in records(self.agg.verdicts)}

    def runner_rows(self, slug: str) -> pd.DataFrame:
        return self.agg.latest[self.agg.latest["runner"] == slug]

    def chart_jobs(self) -> list[tuple[Callable[[pd.DataFrame], bytes | None], pd.DataFrame]]:
        """Every matplotlib chart the pages will draw, with the same rows, so `charts.draw_all` can draw them first
        (the per-cell charts are SVG text, drawn by matrix/publish/cellsite.py)."""
        return [(charts.load_time_by_bnb, self.runner_rows(slug)) for slug in self.found.runners]

    @functools.cached_property
    def gpu(self) -> dict[str, Any]:
        """The predicted layer, read once: wheel readings and torch builds (committed caches), the prediction of
        every (GPU arch, torch build, bitsandbytes release) and the GPUs page's context."""
        readings, builds = gpus_page.load_inputs(self.axes.path)
        code = sorted(Path(predict.__file__).parent.glob("*.py"))  # the same inputs and code: the same predictions
        preds = incremental.cached_call("predictions", predict.predictions, readings, builds, code=code)
        context = gpus_page.gpus_context(readings, builds, self.agg.latest, axes_names=list(self.axes.torch_builds),
                                         preds=preds)
        return {"readings": readings, "preds": preds, "context": context}

    def gpu_exports(self) -> dict[str, bytes]:
        """data/binaries.csv and data/predictions.csv: the predicted layer as tidy tables."""
        preds = self.gpu["preds"]
        return {"binaries.csv": gpus_page.binaries_csv(self.gpu["readings"]),
                "predictions.csv": gpus_page.predictions_csv(preds),
                "loader-rules.csv": gpus_page.loader_rules_csv(preds), "gpu-names.csv": gpus_page.gpu_names_csv(preds)}

    def last(self) -> dict[str, Any]:
        v = self.agg.verdicts
        return {"date": v["last_measured"].max() if len(v) else "", "cells": len(v),
                "records": len(self.agg.frame), "runners": len(self.found.runners),
                "problems": len(self.agg.problems)}


# ------------------------------------------------------------------------------------------ wording helpers
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


def markdown_snippet(cell: dict[str, Any], why: dict[str, Any] | None) -> str:
    """What a maintainer pastes into an issue about a cell: its badge linked to its page, and a one-line verdict
    (with its cause and measured way out, `wayout.summary`, when it does not simply work)."""
    url = urls.absolute(cell["cell_path"])
    message = badge.message(cell["verdict"])
    detail = wayout.summary(cell, why, own=True)  # our words and versions only: it is pasted into issues
    line = (f"torch {cell['torch']}, bitsandbytes {cell['bnb']}, transformers {cell['transformers']} on "
            f"{cell['runner']}: {message}{f' ({detail})' if detail else ''}, measured {cell['last_measured']}.")
    return f"[![bnb-matrix: {message}]({url}badge.svg)]({url}) {' '.join(line.split())}"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def num(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A number for a table: '' when missing, fixed decimals, optional sign."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if pd.isna(number):
        return ""
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def effect_sentence(recipe: str, effect: dict[str, Any] | None, baseline: str = "plain") -> str:
    """One plain sentence, from the numbers, saying whether a recipe changed anything against the baseline."""
    if not effect or not effect["pairs"]:
        return (f"Nothing measured yet: no cell has {recipe} and {baseline} both measured on the same shape and "
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
        text += f" Where both passed, the median change against {baseline} was " + ", ".join(parts) + "."
    return text


# ------------------------------------------------------------------------------------------ context functions
def check_page(site: SiteData) -> Iterator[Page]:
    """The check page and its data file (issue 22): matrix/publish/checkpage.py."""
    from matrix.publish.checkpage import check_page as pages

    yield from pages(site)


def home(site: SiteData) -> Iterator[Page]:
    grids = []
    kinds_order = {"gpu": 0, "cpu": 1}  # GPU users first (issue 22)
    found = site.found.runners
    for slug in sorted(found, key=lambda s: (kinds_order.get(str(found[s]["kind"]), 2), s)):
        mine = site.agg.verdicts[site.agg.verdicts["runner"] == slug]
        profile = runner.default_profile(str(found[slug]["kind"]))
        extra = site.axes.profiles[profile].bitsandbytes if profile in site.axes.profiles else ()
        grids.append({"runner": found[slug], "grid": findings.grid(mine, extra, site.found.causes),
                      "last": mine["last_measured"].max() if len(mine) else ""})
    yield Page("", {"intro": Markup(site.intro), "grids": grids, "last": site.last(), "site_url": urls.site_url(),
                    "releases": site.found.releases})


def all_cells(site: SiteData) -> Iterator[Page]:
    yield Page("cells/", {"last": site.last()})  # its rows come from cells/index.js (matrix/publish/cellsite.py)


def peak_memory(row: dict[str, Any]) -> str:
    """Peak memory of a row for a table: 'load / forward' GPU MiB, or the CPU peak RSS on CPU runners."""
    load, forward = num(row.get("mem_gpu_load_peak_mib"), 0), num(row.get("mem_gpu_forward_peak_mib"), 0)
    if load or forward:
        return f"{load or '?'} / {forward or '?'}"
    rss = num(row.get("mem_cpu_peak_rss_mib"), 0)
    return f"{rss} RSS" if rss else ""


def _fix_names(site: SiteData) -> list[str]:
    names = set(site.recipes) | set(site.agg.effects["recipe"]) | set(site.agg.latest["recipe"])
    return sorted(names, key=lambda n: (n != site.baseline, n))


def _fix_item(site: SiteData, name: str) -> dict[str, Any]:
    effects = {r["recipe"]: r for r in records(site.agg.effects)}
    effect = effects.get(name)
    sentence = effect_sentence(name, effect, site.baseline) if name != site.baseline else ""
    return {"name": name, "recipe": site.recipes.get(name), "effect": effect, "sentence": sentence}


def fix(site: SiteData) -> Iterator[Page]:
    for name in _fix_names(site):
        item = _fix_item(site, name)
        pairs = site.agg.pairs[site.agg.pairs["recipe"] == name]
        own = site.agg.latest.loc[site.agg.latest["recipe"] == name, OWN_COLUMNS]  # what the page shows
        yield Page(urls.fix_path(name), {
            **item, "snippet": recipe_snippet(item["recipe"]) if item["recipe"] else "", "pairs": records(pairs),
            "own": records(own), "baseline": site.baseline, "rescued": site.found.fixes[name]["rescued"],
            "changed_errors": site.found.fixes[name]["changed_errors"], "split": site.found.fixes[name]["split"],
            "claim_scope": site.found.fixes[name].get("claim_scope"),
            "multi_gpu": records(findings.multi_gpu(pairs))})


def fixes(site: SiteData) -> Iterator[Page]:
    yield Page("fixes/", {"items": [_fix_item(site, n) for n in _fix_names(site)], "baseline": site.baseline})


def runner_page(site: SiteData) -> Iterator[Page]:
    for slug, facts in site.found.runners.items():
        chart = charts.cached(charts.load_time_by_bnb, site.runner_rows(slug))
        yield Page(urls.runner_path(slug), {
            "runner": facts, "chart": bool(chart),
            "cells": records(site.agg.verdicts[site.agg.verdicts["runner"] == slug])},
            {"load-time.svg": chart} if chart else {})


def runners(site: SiteData) -> Iterator[Page]:
    yield Page("runners/", {"runners": list(site.found.runners.values())})


def budgets(site: SiteData) -> Iterator[Page]:
    yield Page("budgets/", {"blocks": site.found.budgets})


def error(site: SiteData) -> Iterator[Page]:
    for slug in sorted(set(site.catalogue) | {"unclassified"}):
        sig = site.catalogue.get(slug)
        hits = findings.error_hits(site.agg.latest, slug, sig)
        yield Page(urls.error_path(slug), {
            "slug": slug, "sig": sig, "evidence": findings.evidence(hits, site.passing),
            "verbatim": slug == "unclassified", "fix_stats": site.found.errors[slug]["fix_stats"],
            "cells": [site.cells_by_path[p] for p in site.found.errors[slug]["cell_paths"]],
            "way_outs": site.found.errors[slug]["way_outs"]})


def errors(site: SiteData) -> Iterator[Page]:
    counts, total = corpus.site_counts()  # real pasted reports each signature recognises (matrix/data/)
    items = [{"slug": slug, "sig": site.catalogue.get(slug), "count": e["count"], "cells": e["cells"]}
             for slug, e in site.found.errors.items()]
    yield Page("errors/", {"items": items, "corpus_counts": counts, "corpus_total": total})


def gpus(site: SiteData) -> Iterator[Page]:
    yield Page("gpus/", {**site.gpu["context"], "models": gpu_names.load_gpus()})  # models: GPUs users name


def gpu(site: SiteData) -> Iterator[Page]:
    context = site.gpu["context"]
    for g in context["grid"]:
        yield Page(urls.gpu_path(g["arch"]), {"g": g, "builds": context["builds"], "verdicts": context["verdicts"],
                                              "models": gpu_names.load_gpus()})


_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")  # not allowed in XML 1.0 at all


def feed(site: SiteData) -> Iterator[Page]:
    """feed.xml: the Atom feed of verdict changes between runs and of runs that measured new cells, with absolute
    links (feed readers need them)."""
    changes = [{k: _XML_UNSAFE.sub("", str(v)) for k, v in c.items()} for c in site.found.changes]
    firsts = [{k: _XML_UNSAFE.sub("", v) if isinstance(v, str) else [_XML_UNSAFE.sub("", str(x)) for x in v]
               if k in ("torch", "bnb", "transformers") else v for k, v in r.items() if k != "cells"}
              | {"cells_count": len(r["cells"])} for r in site.found.firsts]
    times = [c["time"] for c in changes] + [r["time"] for r in firsts]
    updated = max(times, key=pd.Timestamp) if times else "1970-01-01T00:00:00+00:00"
    yield Page("feed.xml", {"changes": changes, "firsts": firsts, "updated": updated, "site_url": urls.site_url()})


def prequantized(site: SiteData) -> Iterator[Page]:
    """The grid of pre-quantized checkpoints: writer x reader per runner, failures, layouts."""
    yield Page(prequant.ROOT, prequant.index_context(site.agg.prequant))


def prequantized_reader(site: SiteData) -> Iterator[Page]:
    for path, context in prequant.reader_contexts(site.agg.prequant):
        yield Page(path, context)


@dataclass(frozen=True)
class PageKind:
    """One kind of page: the function that yields its pages, its template and its nav title (None: not in nav)."""

    pages: Callable[[SiteData], Iterator[Page]]
    template: str
    nav: tuple[str, str] | None = None  # (title, the Markdown file it links to)


PAGES = (
    PageKind(home, "home.md.j2", ("Home", "index.md")),
    PageKind(check_page, "check.md.j2", ("Check my setup", "check/index.md")),
    PageKind(all_cells, "cells.md.j2", ("All cells", "cells/index.md")),
    PageKind(fixes, "fixes.md.j2", ("Fixes", "fixes/index.md")),
    PageKind(fix, "fix.md.j2"),
    PageKind(errors, "errors.md.j2", ("Errors", "errors/index.md")),
    PageKind(error, "error.md.j2"),
    PageKind(runners, "runners.md.j2", ("Runners", "runners/index.md")),
    PageKind(runner_page, "runner.md.j2"),
    PageKind(budgets, "budgets.md.j2", ("VRAM budgets", "budgets/index.md")),
    PageKind(gpus, "gpus.md.j2", ("GPUs (predicted)", "gpus/index.md")),
    PageKind(gpu, "gpu.md.j2"),
    PageKind(prequantized, "prequant.md.j2", ("Pre-quantized", "prequantized/index.md")),
    PageKind(prequantized_reader, "prequant_reader.md.j2"),
    PageKind(feed, "feed.xml.j2"),
)


def nav() -> list[dict[str, str]]:
    """The site's nav for mkdocs: the generated pages in PAGES' order, then the hand-written pages."""
    return [{title: path} for title, path in [k.nav for k in PAGES if k.nav] + list(HAND_WRITTEN_NAV)]

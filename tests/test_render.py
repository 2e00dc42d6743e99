"""Rendering and the real site build: filters, write-if-changed, permanent paths, inert hostile text, links."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest

from matrix import urls
from matrix.publish import findings, pages, render
from matrix.measure.axes import load_axes
from matrix.errors import ResultsError, UserError
from matrix.publish.sitebuild import build_site, check_out_dir

HOSTILE_CELL = urls.cell_path("cpu-x86_64", "2.13.0+cpu", "0.47.0", "5.24.0")


def page(out: Path, path: str) -> str:
    return (out / path / "index.html").read_text(encoding="utf-8")


def text(html: str) -> str:
    """What a reader sees: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", html))


# ------------------------------------------------------------------------------------------------- filters
def test_clean_strips_ansi_and_controls_and_caps():
    assert render.clean("\x1b[31mred\x1b[0m\x07 ok\r\n") == "red ok\n"
    long = render.clean("x" * 50, limit=10)
    assert long.startswith("x" * 10) and "40 characters cut" in long
    assert render.clean("a" * 20 + "END", limit=3, keep="tail").endswith("END")
    assert render.clean(None) == "" and render.clean(float("nan")) == ""


def test_pre_is_one_inert_line():
    out = str(render.pre("<script>x</script>\n```\n{{ config }}"))
    assert out.startswith('<pre class="untrusted"><code>') and "\n" not in out
    assert "<script>" not in out and "&lt;script&gt;" in out and "{{ config }}" in out


def test_md_escapes_markdown_and_html():
    out = str(render.md("a_b_ *c* `d` [e](f) <g> | h"))
    for raw in ("_", "*", "`", "[", "(", "<", "|"):
        assert raw not in out


def test_fence_outlasts_backticks_in_text():
    out = str(render.fence("a ```` b", "bash"))
    assert out.startswith("`````bash\n") and out.endswith("\n`````")


def test_relative_links():
    assert render.rel_url("", "cells/x/") == "cells/x/index.html"  # opened from disk, a folder URL is a listing
    assert render.rel_url("cells/a/b/", "") == "../../../index.html"
    assert render.rel_url("fixes/plain/", "errors/crash/") == "../../errors/crash/index.html"
    assert render.rel_file("fixes/plain/", "errors/crash/") == "../../errors/crash/index.md"
    assert render.rel_file("", "data/results.csv") == "data/results.csv"


def test_recipe_snippets_are_valid_python():
    for recipe in load_axes().recipes.values():
        snippet = pages.recipe_snippet(recipe)
        compile(snippet, recipe.name, "exec")
        assert "BitsAndBytesConfig(" in snippet and "load_in_4bit=True" in snippet
    seed = pages.recipe_snippet(load_axes().recipes["seed-fix"])
    assert "bnb_4bit_compute_dtype=torch.float16" in seed and 'device_map="auto"' in seed


def test_reproduce_command():
    assert pages.reproduce_command("cpu", "2.13.0+cpu", "0.50.2") == \
        "BNB_MATRIX_PROFILE=cpu .venv/bin/nox -s \"probe(torch='2.13.0+cpu', bnb='0.50.2')\" -- --force"
    # a pair only the wide CPU profile measures gets that profile, so the printed session exists
    assert pages.reproduce_command("cpu", "2.6.0", "0.43.3", load_axes()).startswith("BNB_MATRIX_PROFILE=cpu-wide ")
    assert pages.reproduce_command("gpu", "2.11.0+cu130", "0.45.5").startswith("BNB_MATRIX_PROFILE=cuda ")


def test_effect_sentence_answers_plainly():
    none = {"cells": 3, "pairs": 4, "fail->pass": 0, "pass->fail": 0, "both-pass": 2, "both-fail": 2,
            "median_delta_load_peak_mib": float("nan"), "median_delta_forward_peak_mib": float("nan"),
            "median_delta_load_s": 0.5}
    text = pages.effect_sentence("seed-fix", none)
    assert text.startswith("No: in 3 cells (4 pairings") and "turned 0 failures into passes and 0 passes" in text
    assert "+0.50 s of load time" in text
    assert pages.effect_sentence("seed-fix", None).startswith("Nothing measured yet")


# -------------------------------------------------------------------------------------------- writing files
def test_write_tree_writes_only_changes_and_removes_stale(tmp_path):
    docs = tmp_path / "docs"
    first = render.write_tree({"a.md": b"A", "d/b.md": b"B", "old/x.md": b"X"}, docs)
    assert sorted(first.written) == ["a.md", "d/b.md", "old/x.md"]
    stamp = (docs / "a.md").stat().st_mtime_ns
    second = render.write_tree({"a.md": b"A", "d/b.md": b"B2"}, docs)
    assert second.written == ["d/b.md"] and second.unchanged == 1 and second.removed == ["old/x.md"]
    assert (docs / "a.md").stat().st_mtime_ns == stamp and not (docs / "old").exists()


def test_rendering_is_deterministic(agg):
    axes = load_axes()
    assert render.Site(agg, axes, render.load_catalogue()).files() == \
        render.Site(agg, axes, render.load_catalogue()).files()


# ------------------------------------------------------------------------------------------- the built site
def test_build_report(built_site, agg):
    report, out = built_site
    assert (report.records, report.cells, report.problems) == (25, 5, ())
    assert "25 records, 5 cells, 0 problem(s)" in report.summary()
    for name in ("index.html", "data/results.csv.gz", "data/results.json.gz", "data/matrix.json", "data/index.html",
                 "records/index.html", "axes/index.html", "cells/index.html", "search/search_index.json"):
        assert (out / name).is_file(), name


def test_every_page_at_its_permanent_path(built_site, agg):
    _, out = built_site
    for cell in agg.verdicts.itertuples():
        html = page(out, urls.cell_path(cell.runner, cell.torch, cell.bnb, cell.transformers))
        assert cell.runner in html and cell.last_measured in html
    for recipe, definition in load_axes().recipes.items():  # prequantized recipes: the prequantized/ pages
        assert (out / urls.fix_path(recipe) / "index.html").is_file() == (not definition.kind), recipe
    assert (out / "prequantized" / "index.html").is_file()
    for runner in agg.frame["runner"].unique():
        assert "Intel" in page(out, urls.runner_path(runner)) or "H100" in page(out, urls.runner_path(runner))
    for slug in list(render.load_catalogue()) + ["unclassified"]:
        assert (out / urls.error_path(slug) / "index.html").is_file(), slug


def test_hostile_text_is_inert_and_readable(built_site):
    _, out = built_site
    for path in (HOSTILE_CELL, urls.error_path("unclassified")):
        html = page(out, path)
        assert "<script>window.__pwned" not in html and "<img src=x" not in html
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "{{ config }}" in html and "{% raw %}" in html and "{{ 7*7 }}" in html
        assert "\x1b" not in html and "[31m" not in html and "red</code>" in html
        # The unbalanced fence did not swallow the rest of the page: code blocks balance, the article closes.
        assert html.count("<pre") == html.count("</pre>") and "</article>" in html.split("unbalanced fence")[1]
    assert 'id="history"' in page(out, HOSTILE_CELL).split("unbalanced fence")[1]


def test_cell_page_content(built_site):
    _, out = built_site
    html = page(out, HOSTILE_CELL)
    reproduce = "BNB_MATRIX_PROFILE=cpu .venv/bin/nox -s \"probe(torch='2.13.0+cpu', bnb='0.47.0')\" -- --force"
    assert reproduce in text(html)
    assert "works with a fix" in html and "flaky" in html
    history = (out / HOSTILE_CELL / "history.js").read_text(encoding="utf-8")
    assert "2026-11-01T10:00:00Z" in history and "2026-11-01T10:00:00Z" not in html  # history: data, not HTML
    assert '<script src="history.js"></script>' in html and "<script>window.__pwned" not in history
    assert 'src="memory.svg"' in html and (out / HOSTILE_CELL / "memory.svg").is_file()
    assert '../../../../../errors/' in html


def test_cells_are_searched_through_their_compact_index(built_site, agg):
    """Material's full-text index holds the narrative pages only; the cells are found through cells/index.js
    (versions, runner, hardware, verdict, fixes, error signatures), which the All cells page searches."""
    import json

    _, out = built_site
    docs = json.loads((out / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    assert not [d for d in docs if d["location"].startswith("cells/") and d["location"] != "cells/index.html"]
    assert any(d["location"].startswith("errors/bnb-too-old/") for d in docs)
    text_js = (out / "cells" / "index.js").read_text(encoding="utf-8")
    index = json.loads(text_js.removeprefix("window.bnbMatrixCells = ").rstrip().rstrip(";"))
    rows = [dict(zip(index["columns"], row)) for row in index["rows"]]
    assert sorted("cells/" + r["path"] for r in rows) == sorted(agg.verdicts["cell_path"])
    hostile = next(r for r in rows if "cells/" + r["path"] == HOSTILE_CELL)
    assert hostile["verdict"] == "works-with-fix" and "unclassified" in hostile["signatures"].split()
    assert "<script>" not in text_js  # record text never closes the script


def test_heatmap_per_runner_with_links(built_site):
    _, out = built_site
    html = page(out, "")
    assert html.count('class="heatmap"') == 2
    assert 'href="cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.47.0/transformers-5.24.0/index.html"' in html
    assert "last measured 2026-11-20" in html and "h100-sm90" in html


def test_seed_fix_page_says_what_it_changed(built_site):
    _, out = built_site
    seen = text(page(out, urls.fix_path("seed-fix")))
    assert "Did it change anything? Yes: in 5 cells (6 pairings of cell, shape and budget), seed-fix turned " \
           "2 failures into passes and 0 passes into failures" in seen
    assert "Said to fix CUDA out-of-memory" in seen and "bnb_4bit_compute_dtype" in seen


def test_error_page_lists_messages_and_evidence(built_site):
    pytest.importorskip("matrix.diagnose.signatures")
    _, out = built_site
    html = page(out, urls.error_path("bnb-too-old"))
    assert "4-bit quantization requires bitsandbytes" in html
    assert "cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.45.5/" in html


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


def test_internal_links_resolve(built_site):
    _, out = built_site
    broken = []
    for html_file in out.rglob("*.html"):
        parser = _Links()
        parser.feed(html_file.read_text(encoding="utf-8"))
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not parts.path or link.startswith(("#", "/")):
                continue
            target = (html_file.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{html_file.relative_to(out)} -> {link}")
    assert not broken, broken[:10]


def test_rebuild_rewrites_nothing(built_site, results_dir, tmp_path):
    report, out = built_site
    again = build_site(results_dir, out, work_dir=report.docs_dir.parent, quiet=True)
    assert again.pages_written == 0 and again.pages_unchanged > 50


# ---------------------------------------------------------------------------------------------- bad inputs
def test_missing_results_dir(tmp_path):
    with pytest.raises(ResultsError):
        build_site(tmp_path / "missing", tmp_path / "out", work_dir=tmp_path / "work", quiet=True)


def test_unusable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write|not a folder"):
        check_out_dir(blocker / "site")
    with pytest.raises(UserError, match="not a folder"):
        check_out_dir(blocker)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(UserError, match="previous site build"):
        check_out_dir(precious)
    with pytest.raises(UserError, match="repository"):
        check_out_dir(Path(__file__).resolve().parent.parent)


# ---------------------------------------------------------------------------------------------------- charts
def test_charts_are_deterministic_svg(agg):
    from matrix.publish import charts

    gpu = agg.latest[agg.latest["runner"] == "h100-sm90"]
    budgets = gpu[gpu["budget"] != ""].copy()
    more = budgets.assign(budget_gib=12.0, budget="12", mem_gpu_load_peak_mib=budgets["mem_gpu_load_peak_mib"] + 900)
    svg = charts.memory_by_budget(pd.concat([budgets, more]))
    assert svg and svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert charts.memory_by_budget(budgets) is None  # one budget: nothing worth a chart
    first = charts.memory_by_recipe(gpu)
    assert first == charts.memory_by_recipe(gpu) and b"Peak memory by recipe" in first
    assert charts.load_time_by_bnb(gpu) is None  # only 0.50.2 passed here
    two = gpu.assign(bnb=["0.49.2" if i % 2 else "0.50.2" for i in range(len(gpu))], outcome="pass")
    assert b"load time (s), passing runs" in charts.load_time_by_bnb(two)


def test_memory_chart_svg_escapes_record_text(agg):
    import xml.etree.ElementTree as ET

    from matrix.publish import charts

    gpu = agg.latest[agg.latest["runner"] == "h100-sm90"].copy()
    gpu["recipe"] = "<script>alert(1)</script>&"
    svg = charts.memory_by_recipe(gpu)
    assert b"<script>" not in svg and b"&lt;script&gt;" in svg
    root = ET.fromstring(svg)  # well-formed XML
    assert len([e for e in root.iter() if e.tag.endswith("rect")]) >= len(gpu)  # a bar per row at least


def test_charts_are_cached_on_disk_by_content(agg, tmp_path, monkeypatch):
    from matrix.publish import charts

    monkeypatch.setattr(charts, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(charts, "_CHARTS", {})
    charts.STATS.clear()
    gpu = agg.latest[agg.latest["runner"] == "h100-sm90"]
    two = gpu.assign(bnb=["0.49.2" if i % 2 else "0.50.2" for i in range(len(gpu))], outcome="pass")
    first = charts.cached(charts.load_time_by_bnb, two)
    assert charts.STATS["drawn"] == 1 and len(list(tmp_path.rglob("*.svg"))) == 1
    charts._CHARTS.clear()  # a new build: only the disk remembers
    assert charts.cached(charts.load_time_by_bnb, two) == first == charts.load_time_by_bnb(two)
    assert (charts.STATS["drawn"], charts.STATS["disk"]) == (1, 1)
    changed = two.assign(time_load_s=two["time_load_s"] * 2)
    assert charts.cached(charts.load_time_by_bnb, changed) != first and charts.STATS["drawn"] == 2


def test_empty_results_build_a_clean_site(tmp_path):
    (tmp_path / "results").mkdir()
    report = build_site(tmp_path / "results", tmp_path / "out", work_dir=tmp_path / "work", quiet=True)
    assert (report.records, report.cells) == (0, 0)
    assert "No measurements yet" in page(tmp_path / "out", "")
    assert (tmp_path / "out" / urls.fix_path("seed-fix") / "index.html").is_file()


def test_budgets_page_tabulates_recipe_by_budget(built_site, agg):
    _, out = built_site
    html = page(out, "budgets")
    seen = text(html)
    assert "How a smaller card is emulated" in seen and "Compute and bandwidth are the big card" in seen
    budgets = sorted({float(b) for b in agg.latest["budget_gib"].dropna()})
    assert budgets, "the fixture records should hold some budget runs"
    for b in budgets:
        assert f"{b:g} GiB" in seen
    assert "whole card" in seen and "Smallest budget each recipe loaded" in seen


def test_changed_errors_counts_both_fail_pairs_whose_error_differs():
    pairs = pd.DataFrame({"change": ["both-fail", "both-fail", "both-fail", "fail->pass"],
                          "plain_signature": ["cuda-oom", "cuda-oom", "bnb-too-old", "cuda-oom"],
                          "signature": ["dispatched-to-cpu", "dispatched-to-cpu", "bnb-too-old", None]})
    assert findings.changed_errors(pairs) == [{"before": "cuda-oom", "after": "dispatched-to-cpu", "count": 2}]


def test_seed_fix_page_has_a_multi_gpu_section(built_site):
    _, out = built_site
    seen = text(page(out, urls.fix_path("seed-fix")))
    assert "On several GPUs" in seen
    assert "Not measured yet" in seen or "Pairings measured on runners with more than one GPU" in seen


def test_the_committed_results_build_strict_with_a_page_for_everything(tmp_path):
    """The published data, not fixtures: every cell, recipe, runner and error has its page; exports are there."""
    from matrix.publish import aggregate, prequant

    results = Path(__file__).resolve().parent.parent / "results"
    report = build_site(results, tmp_path / "public", strict=True, work_dir=tmp_path / "work", quiet=True)
    out = tmp_path / "public"
    assert report.problems == () and report.cells >= 2
    agg = aggregate.load(results, warn=False)
    for cell in agg.verdicts.itertuples():
        html = page(out, urls.cell_path(cell.runner, cell.torch, cell.bnb, cell.transformers))
        assert cell.runner in html and cell.last_measured in html
    on_the_fly = {name for name, recipe in load_axes().recipes.items() if not recipe.kind}
    for recipe in on_the_fly | set(agg.latest["recipe"]):
        assert (out / urls.fix_path(recipe) / "index.html").is_file(), recipe
    for path, _ in prequant.reader_contexts(agg.prequant):  # a page per reader release of pre-quantized checkpoints
        assert (out / path / "index.html").is_file(), path
    for runner in agg.frame["runner"].unique():
        assert (out / urls.runner_path(runner) / "index.html").is_file(), runner
    for slug in {s for s in agg.latest["signature"].dropna() if s}:
        assert (out / urls.error_path(slug) / "index.html").is_file(), slug
    for name in ("results.csv.gz", "results.json.gz", "matrix.json"):
        assert (out / "data" / name).stat().st_size > 0
    assert "Did it change anything?" in text(page(out, urls.fix_path("seed-fix")))
    # the predicted layer: a page per GPU architecture, the exports, and the prediction beside measured GPU cells
    for arch in ("sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"):
        assert "Predicted, not measured" in text(page(out, urls.gpu_path(arch))), arch
    for name in ("binaries.csv", "predictions.csv"):
        assert (out / "data" / name).stat().st_size > 10_000, name
    agreement = text(page(out, "gpus/"))
    assert "Predictions against measurements" in agreement and "h100-sm90" in agreement
    gpu_cells = agg.verdicts[agg.verdicts["runner"].str.contains("sm90")]
    for cell in gpu_cells.itertuples():
        html = text(page(out, urls.cell_path(cell.runner, cell.torch, cell.bnb, cell.transformers)))
        assert "Predicted from the binaries for this GPU (sm_90)" in html, cell.bnb


def test_placement_names_offloaded_modules():
    assert render.placement('{"cuda:0": 146, "meta": 1}') == "cuda:0 146, offloaded (meta) 1"
    assert render.placement(None) == ""

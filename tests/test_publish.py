"""What the site offers issue trackers and feed readers: per-cell badges (SVG + shields.io endpoint), the
copy-as-Markdown snippet, the Atom feed of verdict changes; and the build's own shape (relative config paths,
no third-party request in any page)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from matrix import urls
from matrix.publish import badge, findings
from matrix.measure.axes import load_axes
from matrix.publish.sitebuild import write_config

ATOM = "{http://www.w3.org/2005/Atom}"
FIXTURE = Path(__file__).parent / "fixtures" / "records.jsonl"
CHANGED = urls.cell_path("cpu-x86_64", "2.13.0+cpu", "0.47.0", "5.24.0")  # fixture: seed-fix failed, then a fix


def test_verdict_changes_between_runs(agg):
    changes = findings.verdict_changes(agg.frame, load_axes().baseline)
    assert [(c["cell_path"], c["before"], c["after"]) for c in changes] == [(CHANGED, "fails", "works-with-fix")]
    assert changes[0]["run_id"] == "20261120T1000Z-fixture" and changes[0]["time"].startswith("2026-11-20T10:00")
    # records of one run carry their own times, seconds apart: still one run, still one change
    spread = agg.frame.assign(time=agg.frame["time"] + pd.to_timedelta(range(len(agg.frame)), unit="s"))
    assert [(c["cell_path"], c["after"]) for c in findings.verdict_changes(spread, "plain")] == \
        [(CHANGED, "works-with-fix")]
    # no second run, no change
    assert findings.verdict_changes(agg.frame[agg.frame["run_id"] != "20261101T1000Z-fixture"], "plain") == []


def test_atom_feed_is_valid_and_escaped(built_site):
    _, out = built_site
    root = ET.parse(out / "feed.xml").getroot()
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{name}") is not None, name
    entries = [e for e in root.findall(f"{ATOM}entry") if " -> " in e.find(f"{ATOM}title").text]  # changes
    assert len(entries) == 1
    entry = entries[0]
    for name in ("id", "title", "updated", "link"):
        assert entry.find(f"{ATOM}{name}") is not None, name
    assert entry.find(f"{ATOM}title").text == "bitsandbytes 0.47.0 on cpu-x86_64: fails -> works with a fix"
    assert entry.find(f"{ATOM}link").get("href") == urls.absolute(CHANGED)
    assert "20261120T1000Z-fixture" in entry.find(f"{ATOM}summary").text
    pd.Timestamp(entry.find(f"{ATOM}updated").text)  # RFC 3339
    assert json.loads((out / "data" / "changes.json").read_text())["items"][0]["after"] == "works-with-fix"


def test_feed_escapes_untrusted_text():
    from matrix.publish.render import environment

    hostile = {"runner": "cpu</title><x>&", "torch": "2\x01", "bnb": "<b>", "transformers": "5", "before": "fails",
               "after": "works", "run_id": "r&d", "time": "2026-01-01T00:00:00+00:00", "cell_path": "cells/x/"}
    from matrix.publish.render import VERDICT_LABELS

    text = environment().get_template("feed.xml.j2").render(
        here="feed.xml", changes=[{k: v.replace("\x01", "") for k, v in hostile.items()}], updated=hostile["time"],
        site_url="https://example.org/", VERDICT_LABELS=VERDICT_LABELS)
    title = ET.fromstring(text.encode()).find(f"{ATOM}entry/{ATOM}title").text
    assert title == "bitsandbytes <b> on cpu</title><x>&: fails -> works"


def test_every_page_links_the_feed(built_site):
    _, out = built_site
    for html_file in [out / "index.html", out / CHANGED / "index.html", out / "errors" / "index.html"]:
        html = html_file.read_text(encoding="utf-8")
        assert re.search(r'<link rel="alternate" type="application/atom\+xml"[^>]*href="[./]*feed\.xml"', html)
        assert 'class="feed-link"' in html


def test_badge_svg_and_endpoint(built_site):
    _, out = built_site
    cell = out / CHANGED
    endpoint = json.loads((cell / "badge.json").read_text())
    assert endpoint == {"schemaVersion": 1, "label": "bnb-matrix", "message": "works with a fix", "color": "yellow"}
    svg = ET.parse(cell / "badge.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("aria-label") == "bnb-matrix: works with a fix"
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "works with a fix" in texts and "bnb-matrix" in texts
    # the width follows the measured text: a longer message makes a wider badge
    assert int(ET.fromstring(badge.svg("works with a fix", "#000")).get("width")) > \
        int(ET.fromstring(badge.svg("fails", "#000")).get("width"))
    assert badge.text_width("MMMM") > badge.text_width("iiii") > 0
    assert b"&lt;script&gt;" in badge.svg("<script>", "#000")


def test_copy_as_markdown_snippet(built_site):
    _, out = built_site
    html = (out / CHANGED / "index.html").read_text(encoding="utf-8")
    url = urls.absolute(CHANGED)
    text = re.sub(r"<[^>]+>", "", html.split('id="link-it-from-an-issue"', 1)[1])
    assert f"[![bnb-matrix: works with a fix]({url}badge.svg)]({url}) torch 2.13.0+cpu, bitsandbytes 0.47.0" in text
    assert "works with a fix (" in text and "passes with seed-fix" in text  # wayout.summary: cause, way out


def test_generated_config_uses_relative_paths(tmp_path: Path):
    from matrix.publish.sitebuild import OVERRIDES, ROOT_CONFIG

    path = write_config(tmp_path / "work", tmp_path / "work" / "docs")
    values = dict(re.findall(r'^\s*(INHERIT|docs_dir|custom_dir): "([^"]*)"$', path.read_text(), re.M))
    assert values["docs_dir"] == "docs" and not any(v.startswith("/") for v in values.values())
    assert (path.parent / values["INHERIT"]).resolve() == ROOT_CONFIG.resolve()
    assert (path.parent / values["custom_dir"]).resolve() == OVERRIDES.resolve()


def test_no_third_party_request_in_any_page(built_site):
    """Every resource a page loads (src=, <link href=>, CSS url()) is on the site itself: no fonts, no CDN.
    (rel=canonical names the page's published URL; browsers do not fetch it.)"""
    _, out = built_site
    for html_file in out.rglob("*.html"):
        html = html_file.read_text(encoding="utf-8")
        loads = re.findall(r'\ssrc="([^"]*)"', html)
        loads += re.findall(r'<link\b(?![^>]*rel="canonical")[^>]*\shref="([^"]*)"', html)
        remote = [u for u in loads if re.match(r"[a-z]+:|//", u) and not u.startswith("data:")]
        assert not remote, (html_file, remote)
    for css in out.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", css.read_text(encoding="utf-8")), css
    assert "unpkg.com" not in (out / "index.html").read_text() and "fonts.googleapis" not in \
        (out / "index.html").read_text()


def _budget_rows() -> pd.DataFrame:
    rows = []
    for recipe, peaks in {"plain": [None, 5000.0, 7000.0], "seed-fix": [None, 5000.0, 7000.0]}.items():
        for budget, peak in zip([4.0, 8.0, 12.0], peaks):
            rows.append({"recipe": recipe, "shape": "8b", "budget": f"{budget:g}", "budget_gib": budget,
                         "outcome": "fail" if peak is None else "pass", "mem_gpu_load_peak_mib": peak,
                         "mem_gpu_forward_peak_mib": peak, "mem_cpu_peak_rss_mib": None})
    return pd.DataFrame(rows)


def test_charts_mark_failures_instead_of_plotting_zero():
    import xml.etree.ElementTree as ET

    from matrix.publish import charts

    ns = "{http://www.w3.org/2000/svg}"
    whole = _budget_rows().assign(budget="")
    bars = ET.fromstring(charts.memory_by_recipe(whole.iloc[[0, 1]]))
    assert any((t.text or "").startswith("✗ failed") for t in bars.iter(f"{ns}text"))  # marked, not a 0 MiB bar
    assert not [r for r in bars.iter(f"{ns}rect") if r.get("height") in ("0.00", "-0.00")]
    svg = ET.fromstring(charts.memory_by_budget(_budget_rows()))
    series = [p for p in svg.iter(f"{ns}polyline") if p.get("stroke") not in ("grey", None)]
    assert len(series) == 2 and len({(p.get("stroke-dasharray"), p.get("stroke-width")) for p in series}) == 2
    axis = next(p for p in svg.iter(f"{ns}path") if p.get("d", "").startswith("M54.00,"))
    axis_y = float(axis.get("d").split("V")[1].split(" ")[0])
    crosses = [p for p in svg.iter(f"{ns}path") if " l7,7 " in p.get("d", "")]
    # the failed runs at 4 GiB measured nothing: their crosses sit below the axis, not on 0 MiB
    assert len(crosses) == 2 and all(float(c.get("d")[1:].split(",")[1].split()[0]) + 3.5 > axis_y for c in crosses)
    budget = next(line for line in svg.iter(f"{ns}line") if line.get("stroke") == "grey")
    assert float(budget.get("x1")) <= 54.0 + 1  # from the left edge of the plot, not from the first budget
    sizes = [float(t.get("font-size")) for t in svg.iter(f"{ns}text")] + \
        [float(t.get("font-size")) for t in bars.iter(f"{ns}text")]
    assert min(sizes) >= 8, sizes


def test_zensical_check_never_blocks(tmp_path: Path):
    """Without zensical the check says it skipped and exits 0 (CI runs it as a non-blocking step)."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "zensical_check.py"
    python = tmp_path / "bin" / "python"  # an interpreter path with no zensical beside it
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    done = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": str(tmp_path / "bin")})
    if "zensical build:" in done.stdout:  # zensical found after all: then it must still exit 0
        assert done.returncode == 0
        return
    assert done.returncode == 0 and "check skipped" in done.stdout, done.stdout + done.stderr


# ------------------------------------------------------------------------------------------ at scale (issue 25)
def test_gzip_exports_hold_every_record_once(built_site, agg):
    import gzip
    import io

    from matrix.publish import exports

    _, out = built_site
    plain = exports.exports(agg)
    csv = gzip.decompress((out / "data" / "results.csv.gz").read_bytes())
    rows = json.loads(gzip.decompress((out / "data" / "results.json.gz").read_bytes()))
    assert len(rows) == len(agg.frame) == 25
    mine, theirs = pd.read_csv(io.BytesIO(csv)), pd.read_csv(io.BytesIO(plain["results.csv"]))
    assert list(mine.columns) == list(theirs.columns) and len(mine) == len(theirs)
    key = ["run_id", "cell_path", "recipe", "shape", "timestamp"]
    assert sorted(map(tuple, mine[key].astype(str).values)) == sorted(map(tuple, theirs[key].astype(str).values))
    assert sorted(json.dumps(r, sort_keys=True) for r in rows) == \
        sorted(json.dumps(r, sort_keys=True) for r in json.loads(plain["results.json"]))


def _new_run(line: str, **requested: str) -> str:
    record = json.loads(line)
    record.update(run_id="20261130T1000Z-new", timestamp="2026-11-30T10:00:00Z",
                  fingerprint=record["fingerprint"] + "-new")
    record["requested"].update(requested)
    return json.dumps(record) + "\n"


def test_a_rebuild_renders_only_the_cells_a_new_run_changed(tmp_path):
    """Nothing new: no cell rendered and mkdocs skipped. One new run of two records, of one existing cell and of a
    new CPU-runner cell of a CUDA torch build: those cells are rendered, the rest are hard links to the previous
    site's files, and the new cell says it was measured without a GPU and links the GPU prediction."""
    from matrix.publish import sitebuild

    results = tmp_path / "results"
    results.mkdir()
    lines = FIXTURE.read_text(encoding="utf-8").splitlines(keepends=True)
    (results / "records.jsonl").write_text("".join(lines), encoding="utf-8")
    out, work = tmp_path / "public", tmp_path / "work"
    first = sitebuild.build_site(results, out, work_dir=work, quiet=True)
    assert (first.cells_rendered, first.cells_reused) == (5, 0) and not first.mkdocs_skipped
    again = sitebuild.build_site(results, out, work_dir=work, quiet=True)
    assert (again.cells_rendered, again.cells_reused, again.mkdocs_skipped) == (0, 5, True)
    assert "0 rendered, 5 unchanged and reused; mkdocs skipped" in again.summary()
    cpu_045 = urls.cell_path("cpu-x86_64", "2.13.0+cpu", "0.45.5", "5.24.0")
    untouched = out / urls.cell_path("h100-sm90", "2.11.0+cu130", "0.50.2", "5.24.0") / "index.html"
    inode = untouched.stat().st_ino
    (results / "new.jsonl").write_text(_new_run(lines[0]) + _new_run(lines[0], torch="2.11.0+cu130"),
                                       encoding="utf-8")
    third = sitebuild.build_site(results, out, work_dir=work, quiet=True)
    assert third.cells == 6 and third.cells_rendered <= 3 and third.cells_reused >= 3, third.summary()
    assert untouched.stat().st_ino == inode  # the same file, linked, not written again
    assert "2026-11-30" in (out / cpu_045 / "index.html").read_text(encoding="utf-8")
    assert "2026-11-30T10:00:00Z" in (out / cpu_045 / "history.js").read_text(encoding="utf-8")
    page = (out / urls.cell_path("cpu-x86_64", "2.11.0+cu130", "0.45.5", "5.24.0") / "index.html").read_text()
    assert "Measured without a GPU" in page
    assert 'href="../../../../../check/index.html?torch=2.11.0%2Bcu130&amp;bnb=0.45.5&amp;transformers=5.24.0"' in page
    assert 'href="../../../../../gpus/index.html"' in page
    assert "Measured without a GPU" not in (out / cpu_045 / "index.html").read_text(encoding="utf-8")

"""Records are untrusted input (issue 17, points 1, 2 and 8): a hostile record is reported with file:line and
skipped, the build goes on, and even a hostile record that got past validation renders inert (checked in a real
headless Chromium: no alert, no injected script, no event handler, no javascript: link)."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from matrix import urls
from matrix.publish import charts, exports, render
from matrix.measure import records
from matrix.measure.records import Record, RecordProblem

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = "<script>window.__evil17=1;alert(1)</script>"


def good() -> dict:
    return json.loads((FIXTURES / "records.jsonl").read_text().splitlines()[0])  # a fail: it gets a Failures section


def hostile(**changes) -> dict:
    data = good()
    for dotted, value in changes.items():
        target = data
        *parents, name = dotted.split("__")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return data


# Each of these ended the build or put a script on the site before issue 17.
XSS = {
    "slug-title": hostile(runner__slug=f"x</title>{SCRIPT}"),
    "recipe-attr-list": hostile(recipe=f"r{SCRIPT}{{: onclick=\"window.__evil17=1\" }}"),
    "bnb-javascript-link": hostile(requested__bnb="[a](javascript:window.__evil17=1)"),
    "shape-img": hostile(shape="<img src=x onerror=window.__evil17=1>"),
    "torch-code-span": hostile(requested__torch="`<b onmouseover=window.__evil17=1>`"),
}
BREAKERS = {
    "mathtext": hostile(recipe="$x^$"),
    "long-version": hostile(requested__bnb="0." + "9" * 300),
    "dot-dot-slug": hostile(runner__slug=".."),
}
NUMBERS = {
    "nan-budget": hostile(budget_gib=float("nan")),
    "inf-memory": hostile(memory_mib={"cpu_peak_rss": float("inf")}),
    "negative-memory": hostile(memory_mib={"cpu_peak_rss": -5.0}),
    "huge-budget": hostile(budget_gib=1e308),
    "string-timing": hostile(timings_s={"load": "fast"}),
    "control-label": hostile(runner__gpu_name="H100\x1b[2J\n# owned"),
}


def write_lines(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in items), encoding="utf-8")  # NaN/Infinity as JSON does


@pytest.mark.parametrize("name", sorted({**XSS, **BREAKERS, **NUMBERS}))
def test_each_hostile_record_is_refused_with_its_place(name):
    data = {**XSS, **BREAKERS, **NUMBERS}[name]
    line = json.dumps(data)
    with pytest.raises(RecordProblem) as info:
        records.parse_line(line, "results/evil.jsonl:3")
    assert str(info.value).startswith("results/evil.jsonl:3: ") and "skipped" in str(info.value)


def test_the_committed_and_fixture_records_all_pass_validation():
    for path in [FIXTURES / "records.jsonl", *records.result_files(Path(__file__).parent.parent / "results")]:
        problems = [i for i in records.iter_file(path) if isinstance(i, RecordProblem)]
        assert not problems, problems[:3]


def test_free_text_is_capped_on_read_head_and_tail(tmp_path):
    message = "ROOT CAUSE " + "x" * 50_000_000 + " LAST LINE"
    write_lines(tmp_path / "r.jsonl", [hostile(error_message=message, stderr_tail=message[:5_000_000] + " LAST LINE")])
    (record,) = records.iter_file(tmp_path / "r.jsonl")
    assert isinstance(record, Record)
    for text in (record.error_message, record.stderr_tail):
        assert len(text) < records.TEXT_LIMIT + 100
        assert text.startswith("ROOT CAUSE") and text.endswith("LAST LINE") and "characters cut" in text


def test_a_line_past_the_line_limit_is_skipped_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "LINE_LIMIT", 4000)
    write_lines(tmp_path / "r.jsonl", [good(), hostile(error_message="y" * 5000), good()])
    items = list(records.iter_file(tmp_path / "r.jsonl"))
    assert [type(i).__name__ for i in items] == ["Record", "RecordProblem", "Record"]
    assert items[1].where.endswith("r.jsonl:2") and "longer than" in items[1].what


def test_equal_texts_share_one_string(tmp_path):
    write_lines(tmp_path / "r.jsonl", [good(), good()])
    first, second = records.iter_file(tmp_path / "r.jsonl")
    assert first.stderr_tail is second.stderr_tail


def test_slugs_never_leave_their_folder_or_outgrow_a_file_name():
    assert urls.slug("..") == urls.slug(".") == "unknown"
    assert len(urls.slug("0." + "9" * 300)) <= urls.SLUG_LIMIT
    assert urls.cell_path("..", "..", "x", "y").split("/")[1] == "unknown"


def test_charts_print_dollar_signs_instead_of_parsing_math(agg):
    rows = agg.latest[agg.latest["cell_path"] == agg.latest["cell_path"].iloc[0]].copy()
    rows["recipe"] = "$x^$"
    svg = charts.memory_by_recipe(rows)
    assert svg and b"$x^$" in svg


def test_heading_filter_leaves_no_angle_bracket_for_the_title():
    out = render.heading(f"x</title>{SCRIPT}")
    assert "<" not in out and ">" not in out and "&#60;" not in out and "\u2039" in out


def test_build_reports_each_hostile_line_and_goes_on(tmp_path):
    from matrix.publish.sitebuild import build_site

    results = tmp_path / "results"
    results.mkdir()
    (results / "good.jsonl").write_bytes((FIXTURES / "records.jsonl").read_bytes())
    evil = [*XSS.values(), *BREAKERS.values(), *NUMBERS.values()]
    write_lines(results / "evil.jsonl", evil)
    report = build_site(results, tmp_path / "public", strict=True, work_dir=tmp_path / "work", quiet=True)
    good_count = len((FIXTURES / "records.jsonl").read_text().splitlines())
    assert report.records == good_count
    where = sorted(p.split(": ")[0] for p in report.problems if "evil.jsonl" in p)
    assert where == sorted(f"{results / 'evil.jsonl'}:{n}" for n in range(1, len(evil) + 1))
    home = (tmp_path / "public" / "index.html").read_text()
    assert "heatmap" in home  # the home page is the home page, not a cell's
    for page in (tmp_path / "public").rglob("*.html"):
        assert "__evil17" not in page.read_text()


# --------------------------------------------------------------------- the second line: escaping in templates
@pytest.fixture(scope="module")
def unvalidated_site(tmp_path_factory):
    """A site built from XSS and build-breaking records with validation switched off: what the templates, the
    filters, urls.slug and the charts do on their own."""
    from matrix.publish.sitebuild import build_site

    base = tmp_path_factory.mktemp("hostile")
    results = base / "results"
    results.mkdir()
    (results / "good.jsonl").write_bytes((FIXTURES / "records.jsonl").read_bytes())
    write_lines(results / "evil.jsonl", [*XSS.values(), *BREAKERS.values()])
    patch = pytest.MonkeyPatch()
    patch.setattr(records, "check_fields", lambda kwargs, where: kwargs)
    try:
        report = build_site(results, base / "public", strict=True, work_dir=base / "work", quiet=True)
    finally:
        patch.undo()
    assert report.records == len((FIXTURES / "records.jsonl").read_text().splitlines()) + len(XSS) + len(BREAKERS)
    return base / "public"


class _Active(HTMLParser):
    """What a page would run of the payload: event-handler attributes, scripts, javascript: links, as parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (name in ("href", "src") and (value or "").startswith("javascript:window")):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_data(self, data: str) -> None:
        if self._in_script and "__evil17" in data:
            self.found.append(f"<script>{data[:60]}")


def test_unvalidated_hostile_records_build_and_stay_text(unvalidated_site):
    pages = list(unvalidated_site.rglob("*.html"))
    assert (unvalidated_site / "index.html").is_file() and len(pages) > 20
    shown = 0
    for page in pages:
        parser = _Active()
        text = page.read_text()
        parser.feed(text)
        assert not parser.found, (page, parser.found)
        shown += "__evil17" in text
    assert shown > 5  # the hostile names are on the pages, as text


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.browser
def test_no_hostile_page_runs_script_in_a_browser(unvalidated_site):
    from tests.test_site_browser import CHROMEDRIVER, CHROMIUM

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_Quiet, directory=str(unvalidated_site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("unhandledPromptBehavior", "ignore")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # Runs before any script of each page: an alert (or our payload's flag) is recorded instead of shown.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__alerts = 0; window.alert = function () { window.__alerts += 1; };")})
    try:
        pages = sorted(p.relative_to(unvalidated_site).as_posix() for p in unvalidated_site.rglob("index.html")
                       if p.parent.name != "search")
        hostile_pages = [p for p in pages if p.startswith(("runners/", "fixes/", "cells/", "errors/", "budgets"))]
        assert len(hostile_pages) > 10
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        for page in ["index.html", *hostile_pages]:
            driver.get(base + page)
            driver.find_element(By.CSS_SELECTOR, "article")
            state = driver.execute_script(
                "return [window.__alerts, typeof window.__evil17, document.title,"
                " Array.from(document.scripts).filter(s => s.text.includes('__evil17')).length,"
                " Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes).some(a =>"
                "   (a.name.startsWith('on') || a.value.startsWith('javascript:window'))"
                "   && a.value.includes('__evil17'))).length]")
            assert state[0] == 0 and state[1] == "undefined", (page, state)
            assert state[3] == 0 and state[4] == 0, (page, state)
    finally:
        driver.quit()
        httpd.shutdown()
        httpd.server_close()


def test_a_50_mb_message_reaches_the_exports_capped(tmp_path):
    from matrix.publish import aggregate

    message = "ROOT " + "m" * 50_000_000 + " END"
    write_lines(tmp_path / "r.jsonl", [good(), hostile(error_message=message, run_id="huge")])
    agg = aggregate.load(tmp_path, warn=False)
    files = exports.exports(agg)
    rows = json.loads(files["results.json"])
    assert len(rows) == 2 and len(files["results.json"]) + len(files["results.csv"]) < 100_000
    for row in rows:
        assert len(row["error_message"]) <= exports.EXPORT_TEXT_LIMIT + 100
    assert any(r["error_message"].startswith("ROOT") and r["error_message"].endswith("END") for r in rows)


def test_our_own_runner_slugs_pass_the_read_check():
    from matrix.measure import runner

    for names in (["NVIDIA H100 80GB HBM3"], ["NVIDIA A100-SXM4-40GB"] * 2, ["Quadro (ES)/X <b>"], ["é" * 100]):
        assert records.RUNNER_SLUG.fullmatch(runner.slug(names, "8.6")), names
    assert records.RUNNER_SLUG.fullmatch(runner.slug([], machine="x86_64"))

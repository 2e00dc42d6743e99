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


# ------------------------------------------------------------------ issue 24: no record can break the matrix
def _adversary():
    import importlib.util

    path = Path(__file__).parent.parent / "scripts" / "adversary.py"
    spec = importlib.util.spec_from_file_location("adversary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ADVERSARY = _adversary()
PASSING = json.loads((FIXTURES / "records.jsonl").read_text().splitlines()[1])
ROUND2 = ADVERSARY.hostile_lines(PASSING)
SPELLINGS = {name for name in ROUND2 if name.startswith("spelling-")}


@pytest.mark.parametrize("name", sorted(set(ROUND2) - SPELLINGS))
def test_round_two_lines_are_each_one_problem_with_their_place(name):
    """A 400-digit integer, one over 4,300 digits, a lone surrogate, a reserved name, a wide or deep group, a
    future or unreadable time: each a RecordProblem naming file:line, never another exception."""
    with pytest.raises(RecordProblem) as info:
        records.parse_line(ROUND2[name], "results/evil.jsonl:9")
    assert str(info.value).startswith("results/evil.jsonl:9: ")
    assert len(str(info.value)) < 700 and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def round_two(tmp_path_factory):
    """Fixture records alone, and with every round-two line and 300 valid wide records added, generated."""
    from matrix.publish.sitebuild import generate

    base = tmp_path_factory.mktemp("round2")
    out = {}
    for name, extra in (("plain", []), ("hostile", [*ROUND2.values(), *ADVERSARY.wide_records(PASSING, 300)])):
        results = base / name / "results"
        results.mkdir(parents=True)
        (results / "good.jsonl").write_bytes((FIXTURES / "records.jsonl").read_bytes())
        (results / "zz-evil.jsonl").write_text("".join(line + "\n" for line in extra), encoding="utf-8")
        out[name] = (results, *generate(results, base / name / "docs", quiet=True))
    return out


def test_a_build_over_round_two_warns_once_per_line_and_keeps_every_cell(round_two):
    results, agg, _ = round_two["hostile"]
    warned = [p for p in agg.problems if "zz-evil.jsonl:" in p]
    assert sorted(int(p.split(": ")[0].rsplit(":", 1)[1]) for p in warned) == list(range(1, len(ROUND2) + 1))
    _, plain, _ = round_two["plain"]
    mine = agg.verdicts[agg.verdicts["cell_path"].isin(plain.verdicts["cell_path"])].reset_index(drop=True)
    assert mine.drop(columns=["records", "runs"]).equals(plain.verdicts.drop(columns=["records", "runs"]))
    from matrix.publish import badge  # the cell pages and badges are written after mkdocs (cellsite), from the verdict

    for path, verdict in zip(plain.verdicts["cell_path"], plain.verdicts["verdict"]):  # each real cell's badge
        assert badge.files(verdict) == badge.files(agg.verdicts.set_index("cell_path").loc[path, "verdict"])


def test_wide_records_add_two_columns_not_thousands(round_two):
    """300 records with 16 keys of their own in checks and in timings: one `<group>_other` column each."""
    _, agg, _ = round_two["hostile"]
    _, plain, _ = round_two["plain"]
    assert set(agg.frame.columns) - set(plain.frame.columns) == {"checks_other", "timings_s_other"}
    assert agg.frame["checks_other"].dropna().str.len().max() < 1000


def test_the_probe_reads_fingerprints_past_every_hostile_line(round_two):
    """`nox -s probe` reads fingerprints through the same reader: a hostile line is skipped there too."""
    from matrix.measure import jobs

    found = jobs.measured_fingerprints(round_two["hostile"][0])
    assert PASSING["fingerprint"] in found and "adversary-299" in found


def test_other_spellings_of_a_real_name_are_refused_not_replacing_its_page(round_two):
    _, agg, _ = round_two["hostile"]
    spelled = [p for p in agg.problems if "would share one page" in p]
    assert len(spelled) == len(SPELLINGS)
    assert any("torch '2.13.0-CPU' and '2.13.0+cpu' would share one page (2.13.0-cpu)" in p for p in spelled)
    assert not agg.frame["torch"].isin(["2.13.0-CPU"]).any() and "Plain" not in set(agg.frame["recipe"])


def test_a_name_clash_keeps_the_axes_spelling_then_the_most_measured_one(tmp_path):
    day = "2026-11-2{}T00:00:00Z"
    located = [(f"f:{n}", records.from_dict({**PASSING, "timestamp": day.format(n), "run_id": f"r{n}",
                                              "runner": {**PASSING["runner"], "slug": slug}}))
               for n, slug in enumerate(["cpu-x86_64", "cpu-x86_64", "cpu-x86_64", "cpu-x86-64"], start=1)]
    back_dated = (("f:0", records.from_dict({**PASSING, "timestamp": "2000-01-01T00:00:00Z",
                                             "runner": {**PASSING["runner"], "slug": "cpu-x86-64"}})))
    kept, problems = records.one_identity([*located, back_dated])  # a back-dated line does not take the page
    assert [r.runner["slug"] for r in kept] == ["cpu-x86_64"] * 3
    assert [p.where for p in problems] == ["f:4", "f:0"] and "'cpu-x86_64' keeps it" in problems[0].what
    kept, problems = records.one_identity([*located, back_dated], preferred={"cpu-x86-64"})
    assert [p.where for p in problems] == ["f:1", "f:2", "f:3"]


def test_numbers_text_and_times_at_the_edges():
    from matrix.measure import schema

    assert schema.number(10**15, "n", -1e15, 1e15) == 10**15
    with pytest.raises(schema.Invalid, match="an integer of 401 digits"):
        schema.number(10**400, "n", 0, 1e6)
    now = __import__("datetime").datetime(2026, 12, 7, tzinfo=__import__("datetime").timezone.utc)
    assert schema.timestamp("2026-12-07T00:59:00Z", now)  # a clock a little ahead is tolerated
    with pytest.raises(schema.Invalid, match="in the future"):
        schema.timestamp("2026-12-07T01:01:00Z", now)
    with pytest.raises(schema.Invalid, match="not a real date"):
        schema.timestamp("2026-02-30T00:00:00Z", now)
    assert schema.text("a\r\nb\rc", "stderr_tail") == "a\nb\nc"


def test_a_lone_carriage_return_is_cleaned_on_read():
    line = json.dumps({**PASSING, "error_message": "first\rsecond", "stderr_tail": "x\r\ny"})
    record = records.parse_line(line, "r:1")
    assert record.error_message == "first\nsecond" and record.stderr_tail == "x\ny"


def test_saved_with_of_a_prequantized_checkpoint_is_kept_and_a_column():
    from matrix.publish.aggregate import record_row

    saved = {"bitsandbytes": "0.45.5", "transformers": "4.57.1", "torch": "2.6.0", "quant_type": "nf4",
             "double_quant": True}
    record = records.parse_line(json.dumps({**PASSING, "saved_with": saved}), "r:1")
    assert record.saved_with == saved
    assert record_row(record)["saved_with_quant_type"] == "nf4"


def test_the_markdown_snippet_carries_only_our_words_and_versions():
    """The installer's own text (links, @mentions) never lands in the snippet pasted into issues."""
    from matrix.publish import pages, wayout

    row = {"stage": "install", "error_type": "ResolutionImpossible", "torch": "2.6.0", "bnb": "0.45.5",
           "transformers": "4.57.1",
           "error_message": "Because [pwn](https://evil.example) @maintainer needs x, we are stuck"}
    why = {"words": wayout.cause_words(row, {}), "own_words": wayout.cause_words(row, {}, quote=False),
           "way_out": [], "recipes": []}
    assert "evil.example" in why["words"]  # the page quotes the installer (escaped there)
    cell = {"cell_path": "cells/x/", "verdict": "not-installable", "torch": "2.6.0", "bnb": "0.45.5",
            "transformers": "4.57.1", "runner": "cpu-x86_64", "fixes": "", "last_measured": "2026-12-01"}
    snippet = pages.markdown_snippet(cell, why)
    assert "evil" not in snippet and "@" not in snippet and "cannot be installed together" in snippet

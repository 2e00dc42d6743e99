"""Answer first (issues 15 and 12): a failing cell's cause in words and its measured way out, install failures as
verdicts of their own, the grid grouped by transformers, error pages that lead with measured cells, fix pages
split by runner and transformers major, and the newest PyPI releases on the home page.

The records are built here with the one record builder (a small wide matrix on one CPU runner) and the site is
really built from them (mkdocs --strict)."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest

from matrix import urls
from matrix.publish import aggregate, exports, findings, render, wayout
from matrix.measure import discover, records
from matrix.measure.axes import load_axes
from matrix.publish.render import load_catalogue

RUNNER = {"slug": "cpu-x86_64", "kind": "cpu", "cpu_model": "AMD EPYC", "gpu_count": 0}
TOO_OLD = "Using `bitsandbytes` 4-bit quantization requires bitsandbytes: `pip install -U bitsandbytes>=0.46.1`"
CONFLICT = ("No solution found when resolving dependencies: Because transformers==5.24.0 depends on torch>=2.7 and "
            "you require torch==2.6.0, we can conclude that your requirements are unsatisfiable.")


def _record(torch: str, bnb: str, tf: str, recipe: str, outcome: str, stage: str = "", error_type: str = "",
            message: str = "", when: str = "2026-11-25T10:00:00Z") -> records.Record:
    base = records.base("run-" + when.replace(":", ""), torch=torch, bnb=bnb, transformers=tf)
    versions = {} if stage == "install" else {"torch": f"{torch.split('+')[0]}+cpu", "bitsandbytes": bnb,
                                              "transformers": tf}
    data = records.draft(base, RUNNER, recipe, "tiny", outcome=outcome, stage=stage, error_type=error_type,
                         error_message=message, versions=versions, timestamp=when)
    return records.from_dict(data)


def _cell(torch: str, bnb: str, tf: str, outcome: str, **kw) -> list[records.Record]:
    return [_record(torch, bnb, tf, recipe, outcome, **kw) for recipe in ("plain", "seed-fix")]


def wide_records() -> list[records.Record]:
    out = []
    out += _cell("2.13.0+cpu", "0.45.5", "5.24.0", "fail", stage="load", error_type="ImportError", message=TOO_OLD)
    out += _cell("2.13.0+cpu", "0.46.1", "5.24.0", "pass")
    out += _cell("2.13.0+cpu", "0.47.0", "5.24.0", "pass")
    out += _cell("2.13.0+cpu", "0.45.5", "4.57.6", "pass")
    # transformers 4: plain fails, seed-fix passes (so the seed-fix page's 4.x row says it changed something)
    out += [_record("2.13.0+cpu", "0.47.0", "4.57.6", "plain", "fail", "load", "RuntimeError", "weird failure"),
            _record("2.13.0+cpu", "0.47.0", "4.57.6", "seed-fix", "pass")]
    out += _cell("2.6.0", "0.45.5", "5.24.0", "fail", stage="install", error_type="ResolutionImpossible",
                 message=CONFLICT)
    out += _cell("2.6.0", "0.46.1", "5.24.0", "fail", stage="install", error_type="NoMatchingDistribution",
                 message="No matching distribution found for bitsandbytes==0.46.1")
    # a pass, then a later network failure: the network failure is not a result and must not decide the verdict
    out += _cell("2.6.0", "0.47.0", "5.24.0", "pass")
    out += _cell("2.6.0", "0.47.0", "5.24.0", "fail", stage="install", error_type="NetworkError",
                 message="Failed to fetch https://pypi.org/simple/torch/", when="2026-11-26T10:00:00Z")
    out += _cell("2.6.0", "0.47.0", "4.57.6", "fail", stage="install", error_type="NetworkError",
                 message="Failed to fetch https://pypi.org/simple/torch/")
    return out


SNAPSHOT = {"fetched": "2026-11-25T15:14:04Z", "packages": {
    "torch": {"newest": "2.15.0", "line_heads": [], "not_in_axes": [], "yanked_in_axes": []},
    "bitsandbytes": {"newest": "0.47.0", "line_heads": [], "not_in_axes": [], "yanked_in_axes": []},
    "transformers": {"newest": "5.24.0", "line_heads": [], "not_in_axes": [], "yanked_in_axes": []}}}


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wide-results")
    for record in wide_records():
        records.append(path / "wide.jsonl", record)
    (path / "releases.json").write_text(json.dumps(SNAPSHOT), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def wide(wide_dir: Path) -> aggregate.Aggregate:
    return aggregate.load(wide_dir, recipes=load_axes().recipes, warn=False)


@pytest.fixture(scope="module")
def found(wide: aggregate.Aggregate) -> findings.Findings:
    axes = load_axes()
    in_axes = {"torch": {"2.13.0+cpu", "2.6.0"}, "bitsandbytes": {"0.47.0"}, "transformers": {"5.24.0"}}
    return findings.compute(wide, axes.recipes, axes.baseline, load_catalogue(), in_axes)


@pytest.fixture(scope="module")
def wide_site(wide_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from matrix.publish.sitebuild import build_site

    base = tmp_path_factory.mktemp("wide-site")
    build_site(wide_dir, base / "public", strict=True, work_dir=base / "work", quiet=True)
    return base / "public"


def verdict(agg: aggregate.Aggregate, torch: str, bnb: str, tf: str) -> str | None:
    v = agg.verdicts
    rows = v[(v["torch"] == torch) & (v["bnb"] == bnb) & (v["transformers"] == tf)]
    return rows["verdict"].iloc[0] if len(rows) else None


def path(torch: str, bnb: str, tf: str) -> str:
    return urls.cell_path("cpu-x86_64", torch, bnb, tf)


def text(out: Path, site_path: str) -> str:
    html = (out / site_path / "index.html").read_text(encoding="utf-8")
    article = html.split("<article", 1)[1].split("</article>", 1)[0]
    words = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article)))
    return re.sub(r" ([.,:;)])", r"\1", words)


# ---------------------------------------------------------------------------------------------- verdicts
def test_install_failures_are_verdicts_of_their_own_and_network_errors_decide_nothing(wide):
    assert verdict(wide, "2.6.0", "0.45.5", "5.24.0") == "not-installable"
    assert verdict(wide, "2.6.0", "0.46.1", "5.24.0") == "not-available"
    assert verdict(wide, "2.6.0", "0.47.0", "5.24.0") == "works"  # the later network failure is not a result
    assert verdict(wide, "2.6.0", "0.47.0", "4.57.6") is None  # only network failures: no cell at all
    assert verdict(wide, "2.13.0+cpu", "0.45.5", "5.24.0") == "fails"
    assert set(wide.verdicts["verdict"]) <= set(aggregate.VERDICTS)
    # a recipe cannot mend an install: install failures are never paired as a recipe's "both fail"
    old_torch = wide.pairs[wide.pairs["torch"] == "2.6.0"]
    assert list(old_torch["bnb"]) == ["0.47.0"] and list(old_torch["change"]) == ["both-pass"]
    matrix = json.loads(exports.exports(wide)["matrix.json"])
    assert {"not-installable", "not-available"} <= set(matrix["verdicts"])


# ---------------------------------------------------------------------------------------------- findings
def test_cause_in_words_names_the_version_the_message_asks_for(found):
    why = found.causes[path("2.13.0+cpu", "0.45.5", "5.24.0")]
    assert why["slug"] == "bnb-too-old" and why["words"] == "transformers 5 needs bitsandbytes >= 0.46.1"
    conflict = found.causes[path("2.6.0", "0.45.5", "5.24.0")]
    assert conflict["slug"] == "" and conflict["words"] == "the installer says: " + CONFLICT.rstrip(".")


def test_way_out_is_the_nearest_measured_passing_cell_per_axis(found):
    why = found.causes[path("2.13.0+cpu", "0.45.5", "5.24.0")]
    by_axis = {w["axis"]: w for w in why["way_out"]}
    assert by_axis["bnb"]["change"] == "bitsandbytes 0.46.1"  # the oldest newer release that passes, not 0.47.0
    assert by_axis["bnb"]["cell_path"] == path("2.13.0+cpu", "0.46.1", "5.24.0")
    assert by_axis["transformers"]["change"] == "transformers 4.57.6"
    assert "torch" not in by_axis  # torch 2.6.0 with bnb 0.45.5 cannot even be installed: no way out there
    # the not-installable cell's way out: another torch passes with the same bitsandbytes? no (it fails); a newer
    # bitsandbytes on the same torch is not-available, 0.47.0 works
    conflict = {w["axis"]: w["value"] for w in found.causes[path("2.6.0", "0.45.5", "5.24.0")]["way_out"]}
    assert conflict == {"bnb": "0.47.0"}


def test_nearest_prefers_a_newer_bitsandbytes_and_the_closest_other_version():
    assert wayout._nearest("0.45.5", ["0.43.3", "0.48.2", "0.47.0"], newer_first=True) == "0.47.0"
    assert wayout._nearest("0.50.2", ["0.43.3", "0.48.2"], newer_first=True) == "0.48.2"
    assert wayout._nearest("2.8.0", ["2.6.0", "2.10.0", "2.15.0"], newer_first=False) == "2.10.0"


def _square(bnb: str, tf: str, verdict: str, fixes: str = "") -> dict:
    return {"runner": "r", "torch": "2.8.0", "bnb": bnb, "transformers": tf, "verdict": verdict, "fixes": fixes,
            "cell_path": f"cells/{bnb}/{tf}/"}


def test_way_out_prefers_a_plain_pass_over_a_nearer_pass_with_a_fix_and_says_so():
    squares = [_square("0.45.5", "4.57.6", "fails"), _square("0.46.1", "4.57.6", "works-with-fix", "seed-fix"),
               _square("0.48.2", "4.57.6", "works"), _square("0.45.5", "4.56.2", "works-with-fix", "nf4-bf16")]
    cells = {tuple(c[k] for k in aggregate.CELL): c for c in squares}
    out = wayout.way_out(squares[0], cells)
    # 0.46.1 is nearer but needs a fix; 0.48.2 works plainly. transformers has only a fix: it comes last
    assert [(o["axis"], o["value"], o["verdict"]) for o in out] == [
        ("bnb", "0.48.2", "works"), ("transformers", "4.56.2", "works-with-fix")]
    why = {"words": "boom", "way_out": out, "recipes": []}
    assert wayout.summary(squares[0], why) == "boom; bitsandbytes 0.48.2 works"
    assert wayout.change_words(out[1]) == "transformers 4.56.2 works with a fix: nf4-bf16"
    # only a pass with a fix measured on that axis: it is the way out, and the error page's change says so
    del cells[("r", "2.8.0", "0.48.2", "4.57.6")]
    out = wayout.way_out(squares[0], cells)
    assert out[0]["value"] == "0.46.1" and out[0]["verdict"] == "works-with-fix"
    groups = wayout.error_way_outs([squares[0]], {"cells/0.45.5/4.57.6/": {**why, "way_out": out,
                                                                           "torch_label": "2.8.0"}}, cells)
    assert [g["change"] for g in groups] == ["bitsandbytes >= 0.46.1, works with a fix: seed-fix",
                                             "transformers 4.56.2, works with a fix: nf4-bf16"]


def test_error_way_outs_say_which_change_passed_with_versions(found):
    error = found.errors["bnb-too-old"]
    assert error["cells"] == 1 and error["cell_paths"] == [path("2.13.0+cpu", "0.45.5", "5.24.0")]
    changes = {w["change"]: w for w in error["way_outs"]}
    assert "bitsandbytes >= 0.46.1" in changes  # every measured newer release on that torch passes
    assert changes["bitsandbytes >= 0.46.1"]["items"] == [{
        "where": "cpu-x86_64, torch 2.13.0+cpu, transformers 5.24.0", "failed": path("2.13.0+cpu", "0.45.5", "5.24.0"),
        "passed": path("2.13.0+cpu", "0.46.1", "5.24.0")}]
    assert "transformers 4.57.6" in changes


def test_seed_fix_effect_is_split_by_runner_and_transformers_major(found):
    split = {(g["runner"], g["major"]): g for g in found.fixes["seed-fix"]["split"]}
    assert split[("cpu-x86_64", "4.x")]["fail->pass"] == 1
    assert split[("cpu-x86_64", "5.x")]["fail->pass"] == 0 and split[("cpu-x86_64", "5.x")]["both-pass"] >= 3


def test_newest_releases_say_whether_each_is_measured(found):
    newest = {r["package"]: r for r in found.releases}
    assert newest["torch"]["newest"] == "2.15.0" and newest["torch"]["cells"] == 0
    assert not newest["torch"]["in_axes"] and newest["transformers"]["in_axes"]
    assert newest["bitsandbytes"]["cells"] >= 2 and newest["bitsandbytes"]["runners"] == ["cpu-x86_64"]
    data = json.loads(findings.exports(found)["newest-releases.json"])["items"]
    assert data == json.loads(json.dumps(found.releases))
    assert json.loads(findings.exports(found)["causes.json"])["items"].keys() == found.causes.keys()


def test_grid_rows_are_torch_builds_grouped_by_transformers_columns_in_version_order(wide, found):
    grid = findings.grid(wide.verdicts, ["0.50.2", "0.9.0"], found.causes)
    assert grid["columns"] == ["0.9.0", "0.45.5", "0.46.1", "0.47.0", "0.50.2"]
    assert [g["transformers"] for g in grid["groups"]] == ["5.24.0", "4.57.6"]
    assert [r["torch"] for r in grid["groups"][0]["rows"]] == ["2.6.0", "2.13.0+cpu"]
    square = grid["groups"][0]["rows"][1]["cells"][1]
    assert square["why"] == "transformers 5 needs bitsandbytes >= 0.46.1; bitsandbytes 0.46.1 works"


# ---------------------------------------------------------------------------------------------- the built site
def test_failing_cell_page_says_why_and_the_way_out_first(wide_site):
    seen = text(wide_site, path("2.13.0+cpu", "0.45.5", "5.24.0"))
    first = seen.split("The verdict:")[0]
    assert "fails transformers 5 needs bitsandbytes >= 0.46.1" in first
    assert "one version changed: bitsandbytes 0.46.1 works; transformers 4.57.6 works." in first
    html = (wide_site / path("2.13.0+cpu", "0.45.5", "5.24.0") / "index.html").read_text(encoding="utf-8")
    assert 'class="why"' in html and 'href="../../bnb-0.46.1/transformers-5.24.0/index.html"' in html


def test_home_grid_tooltips_and_a_look_of_their_own_for_install_verdicts(wide_site):
    html = (wide_site / "index.html").read_text(encoding="utf-8")
    assert html.count('class="tf-group"') == 2
    assert ('title="torch 2.13.0+cpu, bitsandbytes 0.45.5, transformers 5.24.0: fails: transformers 5 needs '
            'bitsandbytes &gt;= 0.46.1; bitsandbytes 0.46.1 works') in html
    assert '<td class="verdict-not-installable"><a href="cells/cpu-x86-64/torch-2.6.0/bnb-0.45.5/' in html
    assert ('transformers 5.24.0: cannot be installed together: the installer says: No solution found when resolving '
            'dependencies: Because transformers==5.24.0 depends on torch&gt;=2.7') in html
    assert '<td class="verdict-not-available">' in html
    css = (wide_site / "assets" / "matrix.css").read_text(encoding="utf-8")
    assert "td.verdict-not-installable" in css and "td.verdict-not-available" in css


def test_home_says_which_newest_releases_are_not_measured_yet(wide):
    # rendered from aggregate.load, which reads results/releases.json (sitebuild.generate does not pass it yet)
    home = render.Site(wide, load_axes(), load_catalogue()).files()["index.md"].decode()
    listed = "2.15.0" in {v.split("+")[0] for v in discover.axes_versions(load_axes(), "torch")}  # the real axes
    reason = "in the axes, waiting for a run" if listed else "not in the axes"
    assert f"| torch | 2.15.0 | **not measured yet** ({reason}" in home
    assert "| bitsandbytes | 0.47.0 | yes: 3 cells on cpu-x86&#95;64 |" in home
    assert "## Newest releases" not in render.Site(aggregate.aggregate(wide_records()), load_axes(),
                                                     load_catalogue()).files()["index.md"].decode()  # no snapshot


def test_error_page_leads_with_measured_cells_and_way_out_then_cause_then_messages(wide_site):
    seen = text(wide_site, urls.error_path("bnb-too-old"))
    assert "Measured in 1 cell: cpu-x86_64 · torch 2.13.0+cpu · bnb 0.45.5 · transformers 5.24.0." in seen
    where = "cpu-x86_64, torch 2.13.0+cpu, transformers 5.24.0"
    assert f"bitsandbytes >= 0.46.1 passed where it failed with {where}" in seen
    html = (wide_site / urls.error_path("bnb-too-old") / "index.html").read_text(encoding="utf-8")
    assert 'href="../../cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.46.1/transformers-5.24.0/index.html"' in html
    assert seen.index("Measured in") < seen.index("Cause") < seen.index("Fixes") < seen.index("What you see")


def test_native_library_page_claims_no_unmeasured_bnb_cuda_version_result(wide_site):
    seen = text(wide_site, urls.error_path("native-library-missing"))
    assert "records whether this works per cell" not in seen
    assert "No recipe of the matrix sets BNB_CUDA_VERSION yet" in seen


def test_seed_fix_page_splits_by_runner_and_transformers_major(wide_site):
    seen = text(wide_site, urls.fix_path("seed-fix"))
    assert "By runner and transformers major" in seen
    assert "cpu-x86_64 4.x 2 2 1 0 1 0 yes" in seen  # plain failed and seed-fix passed on transformers 4
    assert "cpu-x86_64 5.x 4 4 0 0 3 1 no" in seen

"""Findings (what pages state, as pure functions over the aggregates), their data/ exports, and the page list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix.publish import findings, pages
from matrix.measure import records, runner
from matrix.publish.aggregate import CELL
from matrix.measure.axes import load_axes
from matrix.publish.render import load_catalogue


def compute(agg):
    axes = load_axes()
    return findings.compute(agg, axes.recipes, axes.baseline, load_catalogue())


def test_exports_state_the_numbers_the_pages_use(agg):
    found = compute(agg)
    data = {name: json.loads(blob)["items"] for name, blob in findings.exports(found).items()}
    assert findings.exports(found) == findings.exports(compute(agg))  # deterministic bytes
    assert sorted(r["slug"] for r in data["runners.json"]) == sorted(agg.frame["runner"].unique())
    assert sum(r["records"] for r in data["runners.json"]) == len(agg.frame)
    for slug, error in data["errors.json"].items():
        hits = findings.error_hits(agg.latest, slug, load_catalogue().get(slug))
        assert error["count"] == len(hits) and error["cells"] == len(hits[CELL].drop_duplicates())
        for stats in error["fix_stats"].values():
            assert stats["passed"] + stats["failed"] + stats["unmeasured"] == stats["situations"]
    effects = {r["recipe"]: r for r in findings.records(agg.effects)}
    for name, fix in data["fixes.json"].items():
        assert (fix["effect"] or {}).get("pairs") == (effects.get(name) or {}).get("pairs")
    budgeted = agg.latest[agg.latest["budget_gib"].notna()]
    assert len(data["budgets.json"]) == len(budgeted[CELL + ["shape"]].drop_duplicates())


def test_rescued_by_counts_baseline_failures_the_recipe_turned_into_passes(agg):
    axes = load_axes()
    for name in axes.recipes:
        rescued = findings.rescued_by(agg, name, axes.baseline, load_catalogue())
        turned = agg.pairs[(agg.pairs["recipe"] == name) & (agg.pairs["change"] == "fail->pass")]
        assert sum(r["count"] for r in rescued) == len(turned)


def test_runner_slug_is_built_and_parsed_in_one_place():
    assert runner.slug([]) == "cpu-" and runner.slug([], machine="x86_64") == "cpu-x86_64"
    two = runner.slug(["NVIDIA H100 80GB HBM3"] * 2, "9.0")
    assert two == "2x-h100-sm90" and runner.gpu_count(two) == 2 and not runner.is_cpu(two)
    assert runner.default_profile("gpu") == "cuda" and runner.default_profile("cpu") == "cpu"


def test_every_page_kind_has_its_template_and_the_nav_lists_existing_pages(agg):
    templates = Path(__file__).parent.parent / "site" / "templates"
    for kind in pages.PAGES:
        assert (templates / kind.template).is_file(), kind.template
    site = pages.SiteData.of(agg, load_axes(), load_catalogue())
    produced = {p.path + "index.md" if p.path.endswith("/") or not p.path else p.path
                for kind in pages.PAGES for p in kind.pages(site)}
    hand = {path for _, path in pages.HAND_WRITTEN_NAV}
    for entry in pages.nav():
        (path,) = entry.values()
        assert path in produced | hand, path


def test_records_are_built_and_validated_in_one_place(tmp_path):
    base = records.base("run", torch="2.13.0+cpu", bnb="0.50.2", transformers="5.24.0")
    record = records.failure(base, {"slug": "cpu-x86_64"}, "plain", "tiny", "crash", "process", "ProcessDied",
                             "x" * 9000, "e" * 9000, exit_code=-9)
    assert len(record.error_message) == records.MESSAGE_LIMIT and "characters cut" in record.stderr_tail
    records.append(tmp_path / "r.jsonl", record)
    (read,) = records.iter_file(tmp_path / "r.jsonl")
    assert read == record
    draft = records.draft(base, {"slug": "cpu-x86_64"}, "plain", "tiny")
    with pytest.raises(records.RecordProblem, match="outcome"):
        records.from_dict(draft)  # outcome not yet set: not a record


def test_feed_carries_runs_that_measured_new_cells_dated_by_their_records(agg, built_site):
    """Re-measuring with the same verdicts changes nothing, so a feed of changes alone stays empty: each run that
    measured cells for the first time is an entry too, dated by its first record."""
    import xml.etree.ElementTree as ET

    from matrix.publish.aggregate import is_result

    firsts = findings.first_measured(agg.frame, load_axes().baseline)
    cells = [c["cell_path"] for r in firsts for c in r["cells"]]
    assert sorted(cells) == sorted(agg.verdicts["cell_path"]) and len(set(cells)) == len(cells)  # each cell once
    frame = agg.frame[is_result(agg.frame)]
    for run in firsts:
        rows = frame[frame["run_id"] == run["run_id"]]
        assert run["time"] == rows["time"].min().isoformat() and run["runner"] in set(rows["runner"])
        assert sum(run["verdicts"].values()) == len(run["cells"])
        for c in run["cells"]:  # no earlier run measured it
            earlier = frame[(frame["cell_path"] == c["cell_path"]) & (frame["time"] < rows["time"].min())]
            assert earlier.empty
    assert [r["time"] for r in firsts] == sorted((r["time"] for r in firsts), reverse=True)
    atom = "{http://www.w3.org/2005/Atom}"
    _, out = built_site
    titles = [e.find(f"{atom}title").text for e in ET.parse(out / "feed.xml").getroot().findall(f"{atom}entry")]
    new = [t for t in titles if " new cell" in t]
    assert len(new) == len(firsts) >= 1
    first = firsts[0]
    assert new[0].startswith(f"{len(first['cells'])} new cell") and first["runner"] in new[0]


def test_a_budget_not_run_is_not_called_a_failure():
    """'only the whole card' only where every budget was run and failed; a budget not run is named as such."""
    import pandas as pd

    cell = {"runner": "h100-sm90", "torch": "2.11.0+cu130", "bnb": "0.50.2", "transformers": "4.57.6",
            "shape": "8b", "cell_path": "cells/x/", "last_seen": "2026-11-25"}
    rows = [("plain", None, "pass"), ("plain", 6.0, "fail"), ("plain", 8.0, "pass"),
            ("seed-fix", None, "pass"), ("seed-fix", 6.0, "fail"),  # 8 GiB never run for seed-fix
            ("nf4-bf16", None, "pass"), ("nf4-bf16", 6.0, "fail"), ("nf4-bf16", 8.0, "fail")]
    latest = pd.DataFrame([{**cell, "recipe": r, "budget_gib": b, "outcome": o,
                            "signature": "cuda-oom" if o == "fail" else ""} for r, b, o in rows])
    (block,) = findings.budget_blocks(latest, "plain")
    smallest = {s["recipe"]: s for s in block["smallest"]}
    assert smallest["plain"] == {"recipe": "plain", "budget": "8", "failed": ["6"], "not_run": []}
    assert smallest["seed-fix"] == {"recipe": "seed-fix", "budget": None, "failed": ["6"], "not_run": ["8"]}
    assert smallest["nf4-bf16"] == {"recipe": "nf4-bf16", "budget": None, "failed": ["6", "8"], "not_run": []}


def test_claim_scope_says_which_claimed_errors_were_provoked_and_which_never_occurred(agg, built_site):
    from matrix.publish import claims

    catalogue, axes = load_catalogue(), load_axes()
    for recipe, errors in claims.load().items():  # the claims file names real recipes and real signatures
        assert recipe in axes.recipes and errors and set(errors) <= set(catalogue), recipe
    pairs = agg.pairs[agg.pairs["recipe"] == "seed-fix"]
    scope = compute(agg).fixes["seed-fix"]["claim_scope"]
    assert scope["pairs"] == len(pairs) and [e["slug"] for e in scope["errors"]] == claims.load()["seed-fix"]
    for e in scope["errors"]:
        hit = pairs[pairs["plain_signature"] == e["slug"]]
        assert e["provoked"] == len(hit) and e["fixed"] == int((hit["change"] == "fail->pass").sum())
        assert (e["slug"] in scope["untested"]) == hit.empty
    # a made-up pairing table: one OOM under 6 GiB that the recipe fixed, nothing else
    made = pairs.head(1).assign(plain_signature="cuda-oom", budget="6", change="fail->pass", runner="h100-sm90")
    one = claims.scope(made, ["cuda-oom", "invalid-device-function"])
    assert one["errors"][0] | {} == {"slug": "cuda-oom", "provoked": 1, "budgets": ["6 GiB"], "fixed": 1, "cells": 1}
    assert one["untested"] == ["invalid-device-function"] and one["gpu_pairs"] == 1
    _, out = built_site
    html = (out / "fixes" / "seed-fix" / "index.html").read_text(encoding="utf-8")
    assert "The scope of that answer." in html
    for e in scope["errors"]:
        assert ("never occurred" if not e["provoked"] else f"provoked in {e['provoked']} pairing") in html


def test_search_finds_gpu_names_on_their_arch_page_and_skips_the_grid(built_site):
    """A card's name is in its architecture page's searchable text; the grid's squares (a reason each) are not,
    which would multiply the search index for no query anyone types."""
    _, out = built_site
    docs = json.loads((out / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    pages = {d["location"]: d for d in docs if d["location"].startswith("gpus/sm-") and "#" not in d["location"]}
    for name, arch in (("4090", "sm-89"), ("T4", "sm-75"), ("A100", "sm-80"), ("A6000", "sm-86"), ("5090", "sm-120")):
        assert name in pages[f"gpus/{arch}/index.html"]["text"], name
        assert pages[f"gpus/{arch}/index.html"].get("boost", 1) > 1
    assert all(len(d["text"]) < 20_000 for d in pages.values())  # the grid is data-search-exclude

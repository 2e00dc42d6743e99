"""The corpus of real pasted errors: every text classifies as labelled, the held-out shares, the site's counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from matrix.diagnose.corpus import (CORPUS, HELD_OUT, CorpusError, load_reports, recognised_counts, score,
                                    site_counts)
from matrix.diagnose.explain import explain, explain_all
from matrix.diagnose.signatures import TIMEOUT, UNCLASSIFIED, default_catalogue
from matrix.errors import UserError

REPORTS = load_reports(CORPUS)
HELD = load_reports(HELD_OUT)
# Measured on the held-out file when the issue-23 patterns were first written (first pass, before any change made
# after seeing its misses): 35/38 (92%); 38/38 after five patterns were generalised from those misses (and the
# outside set's), so the file is no longer blind. The floor is the first-pass share less one more honest miss.
HELD_OUT_FLOOR = 0.89
# Held-out sets kept outside the repository (issue 23); when the environment names them (files joined by the path
# separator), they are scored too.
OUTSIDE = [p for p in os.environ.get("BNB_MATRIX_OUTSIDE_CORPUS", "").split(os.pathsep) if p]


def slug_of(text: str) -> str | None:
    """The slug of the cause explain() picks, None when it picks none."""
    found = explain(text)
    return found.slug if found else None


def test_corpus_is_real_and_spread() -> None:
    both = REPORTS + HELD
    assert len(both) >= 200 and len(HELD) >= 30
    urls = [r.url for r in both]
    assert len(set(urls)) == len(urls), "one text per thread, and no thread in both files"
    assert all(r.url.startswith("https://github.com/") and r.repo in r.url for r in both)
    assert {r.year for r in REPORTS} >= {2023, 2024, 2025, 2026}
    assert len({r.repo for r in both}) >= 60
    assert sum(r.year >= 2025 for r in both) / len(both) >= 0.30
    catalogue = default_catalogue()
    assert all(r.slug in catalogue and r.slug != TIMEOUT for r in both)  # unclassified: no cause of ours
    assert all(not r.second_slug or r.second_slug in catalogue for r in REPORTS)
    assert sum(r.slug == UNCLASSIFIED for r in REPORTS) >= 10, "texts with no cause of ours, to count false claims"
    texts = " ".join(r.text for r in REPORTS)
    for trait in ("C:\\Users", "D:\\", "/Users/", "ops.cu", "ops.hip", "libbitsandbytes_cpu.so: undefined symbol",
                  "CUDA SETUP:", "\n> ", "GLIBC_2.34", "/usr/lib/wsl/lib"):
        assert trait in texts, trait


@pytest.mark.parametrize("report", REPORTS, ids=[r.url.split("github.com/")[1] for r in REPORTS])
def test_real_report_classifies_as_labelled(report) -> None:  # type: ignore[no-untyped-def]
    found = [sig.slug for sig in explain_all(report.text)]
    if report.slug == UNCLASSIFIED:
        assert found == [], (report.url, found)  # no cause of ours: claim none
        return
    assert found and found[0] == report.slug, (report.url, found)
    if report.second_slug:
        assert report.second_slug in found[1:], (report.url, found)


def test_held_out_share(capsys: pytest.CaptureFixture[str]) -> None:
    result = score(HELD)
    with capsys.disabled():
        print(f"\nheld-out corpus: {result.hits}/{result.total} recognised ({result.share:.0%}), "
              f"false claims {result.false_claims}/{result.negatives}")
    assert result.share >= HELD_OUT_FLOOR
    assert result.false_claims == 0


@pytest.mark.skipif(not OUTSIDE or not all(Path(p).is_file() for p in OUTSIDE),
                    reason="the outside held-out sets are not here")
def test_outside_held_out_share(capsys: pytest.CaptureFixture[str]) -> None:
    outside = [report for path in OUTSIDE for report in load_reports(path)]
    assert not {r.url for r in outside} & {r.url for r in REPORTS + HELD}, "outside means in neither repo file"
    result, both = score(outside), score(HELD + outside)
    with capsys.disabled():
        print(f"\noutside held-out: {result.hits}/{result.total} ({result.share:.0%}); both held-out sets: "
              f"{both.hits}/{both.total} ({both.share:.0%}), false claims {both.false_claims}/{both.negatives}")
    assert both.share >= 0.92 and both.false_claims == 0


def test_score_counts_false_claims() -> None:
    negatives = [r for r in REPORTS if r.slug == UNCLASSIFIED][:3]
    assert score(negatives).false_claims == 0
    claims_everything = score(negatives, explain_fn=lambda text: default_catalogue()["crash"])
    assert claims_everything.false_claims == 3 and claims_everything.hits == 0


def test_two_causes_root_first() -> None:
    # a "binary not found" line, then the CPU library's undefined symbol: both named, the missing binary first
    paste = ("Could not find the bitsandbytes CUDA binary at "
             "PosixPath('/venv/bitsandbytes/libbitsandbytes_cuda130.so')\n"
             "AttributeError: /venv/bitsandbytes/libbitsandbytes_cpu.so: undefined symbol: "
             "cquantize_blockwise_fp16_nf4")
    assert [s.slug for s in explain_all(paste)] == ["native-library-missing", "compiled-without-gpu"]
    assert slug_of(paste) == "native-library-missing"
    assert explain_all("") == [] and explain("hello") is None


def test_paste_debris_is_tolerated() -> None:
    quoted = "> RuntimeError: CUDA error: an illegal memory\n> access was encountered"
    assert slug_of(quoted) == "illegal-memory-access"
    bold = "**Error out of memory at line 380 in file /home/x/bitsandbytes/csrc/pythonInterface.c**"
    assert slug_of(bold) == "cuda-oom"
    ansi = "\x1b[31mError named symbol not found at line 90 in file D:\\a\\bitsandbytes\\csrc\\ops.cu\x1b[0m"
    assert slug_of(ansi) == "named-symbol-not-found"


def test_site_counts_match_the_corpus() -> None:
    counts, total = site_counts()
    with_cause = [r for r in REPORTS if r.slug != UNCLASSIFIED]
    assert total == len(with_cause)
    assert sum(counts.values()) == total  # every report recognised (test above), so every one is counted
    assert counts == recognised_counts(with_cause) and UNCLASSIFIED not in counts
    assert recognised_counts(REPORTS, explain_fn=lambda text: None) == {UNCLASSIFIED: len(REPORTS) - total}


def test_bad_corpus_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.jsonl"
    bad.write_text(json.dumps({"url": "https://github.com/a/b/issues/1", "repo": "a/b", "year": 2024, "slug": "crash",
                               "text": "x"}) + "\n{not json}\n", encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        load_reports(bad)
    assert isinstance(err.value, UserError) and f"{bad}:2" in str(err.value)
    with pytest.raises(CorpusError):
        load_reports(tmp_path / "missing.jsonl")


def test_errors_index_template_shows_the_counts() -> None:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent.parent / "site" / "templates"),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(link=lambda path, text: f"[{text}]({path})", error_path=lambda slug: f"errors/{slug}/")
    env.filters["md"] = lambda s: s
    sig = default_catalogue()["cuda-oom"]
    items = [type("Item", (), {"slug": "cuda-oom", "sig": sig, "count": 2, "cells": 1})()]
    template = env.get_template("errors.md.j2")
    with_counts = template.render(items=items, corpus_counts={"cuda-oom": 15}, corpus_total=90)
    assert "| Real reports |" in with_counts and "| 2 | 1 | 15 |" in with_counts and "90 real pastes" in with_counts
    without = template.render(items=items)  # until render passes the counts, the page is as before
    assert "Real reports" not in without and "| 2 | 1 |" in without

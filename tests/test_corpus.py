"""The corpus of real pasted errors: every text classifies as labelled, the held-out share, the site's counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from matrix.diagnose.corpus import (CORPUS, HELD_OUT, CorpusError, load_reports, recognised, recognised_counts,
                                    site_counts)
from matrix.errors import UserError
from matrix.diagnose.explain import explain, explain_all
from matrix.diagnose.signatures import RESERVED, default_catalogue

REPORTS = load_reports(CORPUS)
HELD = load_reports(HELD_OUT)
HELD_OUT_FLOOR = 0.70  # measured 10/13 (77%) when the patterns were frozen


def slug_of(text: str) -> str | None:
    """The slug of the cause explain() picks, None when it picks none."""
    found = explain(text)
    return found.slug if found else None


def test_corpus_is_real_and_spread() -> None:
    assert len(REPORTS) >= 90 and len(HELD) >= 10
    urls = [r.url for r in REPORTS + HELD]
    assert len(set(urls)) == len(urls), "one text per thread, and no thread in both files"
    assert all(r.url.startswith("https://github.com/") and r.repo in r.url for r in REPORTS + HELD)
    assert {r.year for r in REPORTS} >= {2023, 2024, 2025}
    assert len({r.repo for r in REPORTS}) >= 30
    catalogue = default_catalogue()
    assert all(r.slug in catalogue and r.slug not in RESERVED for r in REPORTS + HELD)
    assert all(not r.second_slug or r.second_slug in catalogue for r in REPORTS)
    texts = " ".join(r.text for r in REPORTS)
    for trait in ("C:\\Users", "ops.cu", "ops.hip", "libbitsandbytes_cpu.so: undefined symbol", "CUDA SETUP:", "\n> "):
        assert trait in texts, trait


@pytest.mark.parametrize("report", REPORTS, ids=[r.url.split("github.com/")[1] for r in REPORTS])
def test_real_report_classifies_as_labelled(report) -> None:  # type: ignore[no-untyped-def]
    found = [sig.slug for sig in explain_all(report.text)]
    assert found and found[0] == report.slug, (report.url, found)
    if report.second_slug:
        assert report.second_slug in found[1:], (report.url, found)


def test_held_out_share(capsys: pytest.CaptureFixture[str]) -> None:
    hits = sum(recognised(r) for r in HELD)
    with capsys.disabled():
        print(f"\nheld-out corpus: {hits}/{len(HELD)} recognised ({hits / len(HELD):.0%})")
    assert hits / len(HELD) >= HELD_OUT_FLOOR


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
    assert total == len(REPORTS)
    assert sum(counts.values()) == total  # every report recognised (test above), so every one is counted
    assert counts == recognised_counts(REPORTS)
    assert recognised_counts(REPORTS, explain_fn=lambda text: None) == {}


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

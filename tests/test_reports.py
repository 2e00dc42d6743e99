"""The reported corpus (data/reports.jsonl) beside the predictions: every report is real, and the agreement is
measured here and stated on the GPUs page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix.predict import reports, torch_builds, wheels

AXES_BUILDS = {"2.11.0+cu130": {"variant": "cu130"}, "2.11.0+cu128": {"variant": "cu128"}}


@pytest.fixture(scope="module")
def compared() -> list[dict]:
    builds = torch_builds.all_builds(torch_builds.load_builds(), AXES_BUILDS)
    return reports.compare(reports.load(), wheels.load_cache(), builds)


def test_corpus_is_at_least_forty_real_reports() -> None:
    corpus = reports.load()
    assert len(corpus) >= 40 and len({r["id"] for r in corpus}) == len(corpus)
    assert all(r["url"].startswith("https://github.com/") and "/issues/" in r["url"] or "/pull/" in r["url"]
               for r in corpus)
    assert {"linux-x86_64", "linux-aarch64", "windows-x86_64"} <= {r["platform"] for r in corpus}


def test_agreement_is_measured(compared: list[dict]) -> None:
    summary = reports.summary(compared)
    assert summary["comparable"] >= 15  # enough to mean something
    assert summary["agreement"] is not None and summary["agreement"] >= 0.8
    for row in compared:  # every answer but a plain yes says why
        assert row["agrees"] in ("yes", "no", "not comparable") and (row["agrees"] == "yes" or row["why"])


def test_known_reports_agree(compared: list[dict]) -> None:
    rows = {r["id"]: r for r in compared}
    assert rows["bnb-1312"]["predicted"] == "no-library" and rows["bnb-1312"]["agrees"] == "yes"  # _nocublaslt124
    assert rows["bnb-1930"]["predicted"] == "l4t-abi"  # Jetson Orin, PyPI aarch64 wheel
    assert rows["bnb-1151"]["predicted"] == "no-wheel"  # 0.43.0 had no aarch64 wheel
    assert rows["bnb-551"]["agrees"] == "yes"  # 0.39.1 picks by the system's CUDA 12.2 runtime


def test_a_bad_line_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "reports.jsonl"
    bad.write_text(json.dumps({"id": "x", "url": "https://example.com", "platform": "linux-x86_64",
                               "outcome": "loads", "says": "s"}) + "\n")
    with pytest.raises(ValueError, match="reports.jsonl:1"):
        reports.load(bad)

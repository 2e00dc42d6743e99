"""Shared fixtures: the hand-made fixture records copied into a results dir, their aggregate, and one site built
from them (mkdocs --strict) that the render and browser tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results dir holding only tests/fixtures/records.jsonl."""
    path = tmp_path_factory.mktemp("results")
    shutil.copy(FIXTURES / "records.jsonl", path / "records.jsonl")
    return path


@pytest.fixture(scope="session")
def agg(results_dir: Path):
    from matrix.publish import aggregate
    from matrix.measure.axes import load_axes

    return aggregate.load(results_dir, recipes=load_axes().recipes, warn=False)


@pytest.fixture(scope="session")
def built_site(results_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(BuildReport, out dir) of a real `mkdocs build --strict` of the fixture records."""
    from matrix.publish.sitebuild import build_site

    base = tmp_path_factory.mktemp("site")
    report = build_site(results_dir, base / "public", strict=True, work_dir=base / "work", quiet=True)
    return report, base / "public"

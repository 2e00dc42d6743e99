"""Shared fixtures: the hand-made fixture records copied into a results dir, their aggregate, and one site built
from them (mkdocs --strict) that the render and browser tests share; and `nox_command`, which runs nox with a
venv folder of the test session's own, so tests never install into (or find ready-made venvs in) the checkout's
own `.nox`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
NOX = Path(sys.executable).with_name("nox")
_ENVDIR: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _nox_envdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nox venv folder of this test session (under pytest's temp dir, kept for the last 3 sessions)."""
    if not _ENVDIR:
        _ENVDIR.append(tmp_path_factory.mktemp("nox-envs"))
    return _ENVDIR[0]


def nox_envdir() -> Path:
    assert _ENVDIR, "the session fixture _nox_envdir has not run"
    return _ENVDIR[0]


def nox_command(*args: str) -> list[str]:
    """`nox --envdir <this session's folder> ARGS`: never the checkout's own .nox."""
    return [str(NOX), "--envdir", str(nox_envdir()), *args]


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

"""The corpus of real pasted errors (`matrix/data/wild_errors*.jsonl`) and how many of them the catalogue recognises.

Each line is one error text that someone pasted into a public issue thread, with the thread's URL and the slug a
maintainer would give it (see `matrix/diagnose/data/README.md`); the slug `unclassified` marks a text that shows none
of our causes, where `explain` must claim nothing. The site's errors index shows, per signature, how many of these
real reports `explain` names correctly; the tests require the main corpus to classify as labelled and report the
share on the held-out file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from matrix.diagnose.explain import explain
from matrix.diagnose.signatures import UNCLASSIFIED
from matrix.errors import UserError

DATA = Path(__file__).with_name("data")
CORPUS = DATA / "wild_errors.jsonl"
HELD_OUT = DATA / "wild_errors_heldout.jsonl"


class CorpusError(UserError):
    """A corpus file is missing or malformed."""


@dataclass(frozen=True)
class Report:
    """One pasted error text and the cause(s) it shows."""

    url: str
    repo: str
    year: int
    slug: str
    text: str
    second_slug: str = ""


def load_reports(path: Path | str = CORPUS) -> list[Report]:
    """The reports of one JSON-lines corpus file, in file order; CorpusError names the file and line when malformed."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorpusError(str(path), "corpus file not found", "pass an existing .jsonl file") from None
    reports = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            reports.append(Report(url=raw["url"], repo=raw["repo"], year=int(raw["year"]), slug=raw["slug"],
                                  text=raw["text"], second_slug=raw.get("second_slug", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(f"{path}:{number}", f"not a report ({exc.__class__.__name__}: {exc})",
                              "one JSON object per line with url, repo, year, slug, text") from None
    return reports


def recognised(report: Report, explain_fn: Callable[[str], object] | None = None) -> bool:
    """True when `explain` names the report's labelled cause first (for an `unclassified` report: claims none)."""
    sig = (explain_fn or explain)(report.text)
    return getattr(sig, "slug", None) == (None if report.slug == UNCLASSIFIED else report.slug)


@dataclass(frozen=True)
class Score:
    """How `explain` did on a set of reports: right answers, and claims made on texts with no cause of ours."""

    hits: int
    total: int
    false_claims: int
    negatives: int

    @property
    def share(self) -> float:
        return self.hits / self.total if self.total else 0.0


def score(reports: Iterable[Report], explain_fn: Callable[[str], object] | None = None) -> Score:
    """Right answers over `reports`, and how many of its `unclassified` texts `explain` claimed a cause for."""
    reports = list(reports)
    right = [recognised(r, explain_fn) for r in reports]
    negatives = [ok for r, ok in zip(reports, right) if r.slug == UNCLASSIFIED]
    return Score(sum(right), len(reports), negatives.count(False), len(negatives))


def recognised_counts(reports: Iterable[Report], explain_fn: Callable[[str], object] | None = None) -> dict[str, int]:
    """Slug -> how many reports labelled with it `explain` recognises (slugs with none recognised are left out)."""
    return dict(Counter(r.slug for r in reports if recognised(r, explain_fn)))


def site_counts(path: Path | str = CORPUS) -> tuple[dict[str, int], int]:
    """(corpus_counts, corpus_total) for the errors index: recognised reports per slug, and reports in the corpus
    that show a cause of ours (texts with none are left out of both)."""
    reports = [r for r in load_reports(path) if r.slug != UNCLASSIFIED]
    return recognised_counts(reports), len(reports)

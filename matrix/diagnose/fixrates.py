"""How often each fix of a signature was measured to work, computed from the records in results/.

A fix that names a recipe was measured: over the distinct situations (cell, shape, VRAM budget) whose latest
record failed with the signature, the latest record of that recipe passed, failed or was never taken. That is the
rule of the error pages (`publish/findings.fix_stats`), recomputed here from `measure.records` because diagnose
does not read publish. A fix without a recipe, or one whose recipe was never run where the error occurred, is "not
measured"; `ranked_fixes` puts fixes measured to work first (best pass rate first) and those measured never to work
last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix.diagnose.signatures import Fix, Signature, classify_record, normalise

FAILED = ("fail", "crash", "timeout")
DEFAULT_RESULTS = Path("results")


@dataclass(frozen=True)
class FixRate:
    """One fix and what the records say about it; `situations` == 0 means not measured."""

    fix: Fix
    passed: int = 0
    failed: int = 0
    situations: int = 0

    @property
    def measured(self) -> bool:
        return self.situations > 0 and self.passed + self.failed > 0

    @property
    def rate(self) -> float:
        return self.passed / self.situations if self.situations else 0.0

    def describe(self, kind: str = "error") -> str:
        """"passed in 3 of 4 cases where this error occurred" or "not measured" (with the reason)."""
        if not self.fix.recipe:
            return "not measured"
        if not self.measured:
            return f"not measured where this {kind} occurred (recipe {self.fix.recipe})"
        return (f"measured: recipe {self.fix.recipe} passed in {self.passed} of {self.situations} "
                f"case{'s' if self.situations != 1 else ''} where this {kind} occurred")


def _situation(record: Any) -> tuple:
    return (record.cell_key, record.shape, record.budget_gib)


def latest_records(records: list[Any]) -> dict[tuple, Any]:
    """(cell, recipe, shape, budget) -> its newest record (by timestamp, file order breaking ties)."""
    latest: dict[tuple, Any] = {}
    for record in records:
        key = (record.cell_key, record.recipe, record.shape, record.budget_gib)
        if key not in latest or record.timestamp >= latest[key].timestamp:
            latest[key] = record
    return latest


def _may_be(sig: Signature, record: Any) -> bool:
    """A cheap first test (one signature's patterns over the whole text) before classifying against them all."""
    if not sig.patterns:
        return True  # crash, timeout, unclassified: decided by the outcome, not by patterns
    text = f"{getattr(record, 'error_type', '')}: {getattr(record, 'error_message', '')}\n" \
           f"{getattr(record, 'stderr_tail', '')}"
    return sig.matches(normalise(text, len(text) + 1))


def fix_rates(sig: Signature, records: list[Any]) -> list[FixRate]:
    """Per fix of `sig` (file order), its measured pass rate where `sig` was the cause of a latest failure."""
    latest = latest_records(records)
    where = {_situation(r) for r in latest.values()
             if r.outcome in FAILED and _may_be(sig, r) and classify_record(r) == sig.slug}
    rates = []
    for fix in sig.fixes:
        passed = failed = 0
        if fix.recipe and where:
            for (cell, recipe, shape, budget), record in latest.items():
                if recipe == fix.recipe and (cell, shape, budget) in where:
                    passed += record.outcome == "pass"
                    failed += record.outcome in FAILED
        rates.append(FixRate(fix, passed, failed, len(where) if fix.recipe else 0))
    return rates


def ranked_fixes(sig: Signature, records: list[Any]) -> list[FixRate]:
    """The fixes of `sig`: those measured to pass somewhere first, best pass rate first; then the unmeasured, in file
    order; last those measured and never seen to pass where the error occurred."""
    rates = fix_rates(sig, records)
    worked = sorted((r for r in rates if r.measured and r.passed), key=lambda r: -r.rate)  # stable: file order ties
    return (worked + [r for r in rates if not r.measured]
            + [r for r in rates if r.measured and not r.passed])


def load_records(results_dir: Path | str | None = None) -> list[Any]:
    """The good records below `results_dir` (default: ./results); [] when there is no such folder."""
    from matrix.measure.records import read_results

    path = Path(results_dir) if results_dir is not None else DEFAULT_RESULTS
    if not path.is_dir():
        return []
    records, _problems = read_results(path)
    return records

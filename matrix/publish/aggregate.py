"""Aggregation: records -> tidy frame, latest result per cell x recipe x shape x budget with its history, a verdict
per cell, and the measured effect of each recipe against the baseline recipe (named in the axes file).

Pure functions over pandas frames; the only I/O is `load()` (reads results/**/*.jsonl through
`records.read_results`). Never imports torch. Every output is sorted on a full key, so the result does not
depend on file or line order and aggregating twice gives the same frames.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from packaging.version import InvalidVersion, Version

from matrix import urls
from matrix.measure import records as records_io
from matrix.diagnose import signatures
from matrix.measure.records import Record
from matrix.measure.install import TRANSIENT
from matrix.measure.schema import KNOWN_KEYS

CELL = ["runner", "torch", "bnb", "transformers"]
KEY = CELL + ["recipe", "shape", "budget"]
FAILED = ("fail", "crash", "timeout")
VERDICTS = ("works", "works-with-fix", "fails", "not-installable", "not-available", "not-measured")
# A cell whose every install failed this way is not a bitsandbytes failure but a verdict of its own.
INSTALL_VERDICTS = {"ResolutionImpossible": "not-installable", "NoMatchingDistribution": "not-available"}
NOT_RESULTS = TRANSIENT  # install failures that say nothing about the cell (network, disk, killed): no verdict

# Columns every frame has, in this order; keys found in the records' nested groups follow, sorted.
BASE_COLUMNS = [
    "runner", "runner_kind", "runner_gpu_name", "runner_cpu_model", "runner_compute_capability", "runner_driver",
    "torch", "bnb", "transformers", "recipe", "shape", "budget_gib", "budget", "outcome", "stage",
    "signature", "warnings", "error_type", "error_message", "stderr_tail", "skip_reason", "exit_code",
    "timestamp", "date", "run_id", "fingerprint", "schema", "cell_path",
    "time_load_s", "time_forward_s", "mem_gpu_load_peak_mib", "mem_gpu_forward_peak_mib", "mem_footprint_mib",
    "check_rel_error", "check_placement",
]


@dataclass(frozen=True)
class Aggregate:
    """Everything the pages and exports are made from.

    frame:    one row per record (tidy), sorted on KEY then time.
    latest:   one row per KEY, the newest record, plus history: first_seen, last_seen, runs, outcomes, flaky.
    verdicts: one row per cell: verdict, fixes, last measured, runner facts, cell_path.
    pairs:    one row per (recipe != baseline, cell, shape, budget) measured for both: the change and the deltas
              (the baseline's columns are called plain_*, whatever the baseline's name).
    effects:  one row per recipe != baseline: counts of each change and median deltas where both passed.
    problems: 'file:line: what' for every line that could not be used (and other data defects).
    releases: the PyPI snapshot `discover` left in the results dir (None when it never ran).
    prequant: the records of pre-quantized checkpoints (those with `saved_with`), kept out of every frame above:
              their cell is (writer, reader), aggregated in matrix/publish/prequant.py.
    """

    frame: pd.DataFrame
    latest: pd.DataFrame
    verdicts: pd.DataFrame
    pairs: pd.DataFrame
    effects: pd.DataFrame
    problems: tuple[str, ...]
    releases: dict[str, Any] | None = None
    prequant: tuple[Record, ...] = ()


@functools.lru_cache(maxsize=65536)
def version_key(text: Any) -> tuple:
    """Sort key for versions: PEP 440 order where parseable ('0.10' after '0.9'), text order otherwise."""
    try:
        return (0, Version(str(text)), "")
    except InvalidVersion:
        return (1, Version("0"), str(text))


def budget_label(budget_gib: float | None) -> str:
    """'' for the whole card, else the budget in GiB without trailing zeros ('6', '7.5')."""
    if budget_gib is None or pd.isna(budget_gib):
        return ""
    return f"{float(budget_gib):g}"


def _scalar(value: Any) -> Any:
    """Nested values (lists, dicts) become canonical JSON text so every cell of the frame is a scalar."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=True)
    return value


def _signature_functions() -> tuple[Callable[[Record], str | None], Callable[[str], list[str]]]:
    """matrix.diagnose.signatures' classifier and warning finder.

    Both are memoised on exactly what they read (outcome, error type and message, stderr tail, whether a
    bitsandbytes version was found; the stderr text): the same failure recurs on every re-run of a cell, and
    matching ~40 regexes against 6 kB of stderr per record dominated aggregation at 10,000 records."""
    classified: dict[tuple, str | None] = {}
    warned: dict[str, list[str]] = {}

    def classify(record: Record) -> str | None:
        versions = record.versions if isinstance(record.versions, dict) else {}
        key = (record.outcome, record.error_type, record.error_message, record.stderr_tail,
               bool(versions.get("bitsandbytes")))
        if key not in classified:
            classified[key] = signatures.classify_record(record)
        return classified[key]

    def find_warnings(stderr: str) -> list[str]:
        if stderr not in warned:
            warned[stderr] = signatures.find_warnings(stderr)
        return list(warned[stderr])

    return classify, find_warnings


def _record_json(record: Record) -> str:
    """record.to_json() without dataclasses.asdict's deep copy (the fields are already plain JSON values)."""
    try:
        return json.dumps(vars(record), sort_keys=True, ensure_ascii=True)
    except TypeError:  # no __dict__ (slots) or a value json cannot take as it is
        return record.to_json()


def record_row(record: Record, classify: Callable[[Record], str | None] | None = None,
               find_warnings: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """Flatten one record into one tidy row (see the Data page for the columns)."""
    runner, req = record.runner, record.requested
    row: dict[str, Any] = {
        "runner": str(runner.get("slug", "")), "torch": str(req.get("torch", "")), "bnb": str(req.get("bnb", "")),
        "transformers": str(req.get("transformers", "")), "recipe": record.recipe, "shape": record.shape,
        "budget_gib": float(record.budget_gib) if record.budget_gib is not None else float("nan"),
        "budget": budget_label(record.budget_gib), "outcome": record.outcome, "stage": record.stage,
        "error_type": record.error_type, "error_message": record.error_message, "stderr_tail": record.stderr_tail,
        "skip_reason": record.skip_reason, "exit_code": record.exit_code, "timestamp": record.timestamp,
        "run_id": record.run_id, "fingerprint": record.fingerprint, "schema": record.schema,
    }
    _group(row, "runner", runner, "runner_{}", skip=("slug",))
    _group(row, "requested", req, "requested_{}", skip=("torch", "bnb", "transformers"))
    _group(row, "versions", record.versions, "version_{}")
    _group(row, "timings_s", record.timings_s, "time_{}_s")
    _group(row, "memory_mib", record.memory_mib, "mem_{}_mib")
    _group(row, "checks", record.checks, "check_{}")
    _group(row, "saved_with", getattr(record, "saved_with", {}) or {}, "saved_with_{}")
    row["env"] = _scalar(record.env) if record.env else ""
    row["cell_path"] = urls.cell_path(*record.cell_key)
    signature = classify(record) if classify and record.outcome in FAILED else None
    row["signature"] = signature or ""
    found = find_warnings(record.stderr_tail) if find_warnings and record.outcome == "pass" else []
    row["warnings"] = " ".join(sorted(set(found)))
    # a digest, not the JSON: it only breaks ties and finds duplicates, and the text was a copy of every record
    row["_order"] = hashlib.sha256(_record_json(record).encode()).hexdigest()
    return row


def _group(row: dict[str, Any], name: str, values: dict[str, Any], column: str, skip: tuple[str, ...] = ()) -> None:
    """A nested group's keys into `row`: a column per key the schema knows (schema.KNOWN_KEYS), every other key
    in one `<name>_other` column of JSON text, so a record's unknown keys never multiply the frame's columns."""
    known, other = KNOWN_KEYS[name], {}
    for key, value in values.items():
        if key in known:
            if key not in skip:
                row[column.format(key)] = _scalar(value)
        else:
            other[key] = value
    if other:
        row[f"{name}_other"] = _scalar(other)


def tidy(records: Iterable[Record], classify: Callable[[Record], str | None] | None = None,
         find_warnings: Callable[[str], list[str]] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per record, sorted on KEY, time, then the record's digest (input order never matters); exact
    duplicates count once. Returns the frame and the problems found (duplicates, bad timestamps)."""
    from matrix.publish.rows import finish, raw_frame  # rows.py builds on record_row: imported here, not above

    return finish(raw_frame(records, classify, find_warnings))


def latest_with_history(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest record per KEY plus its history: first_seen, last_seen, runs, outcomes (oldest first), flaky."""
    if frame.empty:
        return frame.assign(first_seen="", last_seen="", runs=0, outcomes="", flaky=False)
    groups = frame.groupby(KEY, sort=True, dropna=False)
    history = groups.agg(first_seen=("date", "first"), last_seen=("date", "last"), runs=("outcome", "size"),
                         distinct=("outcome", "nunique")).reset_index()
    joined: list[list[str]] = [[] for _ in range(len(history))]  # outcomes oldest first, over plain lists
    for group, outcome in zip(groups.ngroup().tolist(), frame["outcome"].tolist()):
        joined[group].append(outcome)
    history.insert(len(KEY) + 3, "outcomes", [" ".join(o) for o in joined])
    history["flaky"] = history.pop("distinct") > 1
    latest = groups.tail(1).merge(history, on=KEY, how="left", validate="one_to_one")
    return latest.sort_values(KEY, kind="mergesort").reset_index(drop=True)


VERDICT_COLUMNS = ("budget", "outcome", "shape", "recipe", "stage", "error_type")  # a row of cell_verdict


def cell_verdict(rows: list[tuple], baseline: str) -> tuple[str, list[str], list[str]]:
    """Verdict, fixing recipes and the shapes it rests on, from one cell's latest rows as (budget, outcome, shape,
    recipe, stage, error_type); only whole-card (un-budgeted) rows that were not skipped count. Plain tuples, not a
    frame: this runs once per cell, and pandas' filtering cost about 9 ms a cell (a minute at 100,000 records)."""
    rows = [r for r in rows if r[0] == "" and r[1] != "skip"]
    if not rows:
        return "not-measured", [], []
    shapes = sorted({r[2] for r in rows})
    if all(r[4] == "install" for r in rows):  # nothing was probed: the installer's verdict
        kinds = {INSTALL_VERDICTS.get(str(r[5]), "fails") for r in rows}
        return (kinds.pop() if len(kinds) == 1 else "fails"), [], shapes
    passing: dict[str, set[str]] = {s: set() for s in shapes}
    for _, outcome, shape, recipe, _, _ in rows:
        if outcome == "pass":
            passing[shape].add(recipe)
    if all(baseline in passing[s] for s in shapes):
        return "works", [], shapes
    if any(not passing[s] for s in shapes):
        return "fails", [], shapes
    broken = [s for s in shapes if baseline not in passing[s]]
    everywhere = set.intersection(*(passing[s] for s in broken))
    fixes = everywhere or set.union(*(passing[s] for s in broken))
    return "works-with-fix", sorted(fixes - {baseline}), shapes


def _text(value: Any) -> str:
    """A frame value as text, '' for missing (NaN/None)."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def is_result(frame: pd.DataFrame) -> pd.Series:
    """Which records are results: all but install failures of NOT_RESULTS kinds (network, download, disk, killed)."""
    return ~((frame["stage"] == "install") & frame["error_type"].isin(NOT_RESULTS))


def cell_verdicts(latest: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per cell: verdict ('works', 'works-with-fix', 'fails', 'not-installable' when the resolver refused
    the versions together, 'not-available' when one has no installable file here, 'not-measured'), fixes (recipes
    that made the failing shapes pass; all of them pass on every such shape when one exists), shapes (whole-card
    shapes the verdict rests on), records, runs, first seen, last measured, runner facts and the cell page's path."""
    columns = CELL + ["verdict", "fixes", "shapes", "records", "runs", "first_seen", "last_measured",
                      "runner_kind", "runner_gpu_name", "runner_cpu_model", "cell_path"]
    # one pass over plain lists (a groupby with a frame per cell cost about 10 ms a cell)
    names = CELL + [*VERDICT_COLUMNS, "runs", "first_seen", "last_seen", "runner_kind", "runner_gpu_name",
                    "runner_cpu_model", "cell_path"]
    rows_of: dict[tuple, list[tuple]] = {}
    for row in zip(*(latest[c].tolist() for c in names)):
        rows_of.setdefault(row[:len(CELL)], []).append(row[len(CELL):])
    out = []
    for cell in sorted(rows_of):
        rows = rows_of[cell]
        verdict, fixes, shapes = cell_verdict([r[:len(VERDICT_COLUMNS)] for r in rows], baseline)
        first = rows[0]
        out.append(dict(zip(CELL, cell), verdict=verdict, fixes=" ".join(fixes),
                        shapes=" ".join(shapes), records=len(rows),
                        runs=int(sum(r[6] for r in rows)), first_seen=min(r[7] for r in rows),
                        last_measured=max(r[8] for r in rows), runner_kind=_text(first[9]),
                        runner_gpu_name=_text(first[10]), runner_cpu_model=_text(first[11]), cell_path=first[12]))
    return sort_cells(pd.DataFrame(out, columns=columns))


def sort_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort on runner, then versions in PEP 440 order (newest torch/bnb last)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    columns = [frame[c].tolist() for c in CELL]  # plain lists: a frame lookup per row cost seconds at 100k
    order = sorted(range(len(frame)), key=lambda i: (
        columns[0][i], version_key(columns[1][i]), version_key(columns[2][i]), version_key(columns[3][i])))
    return frame.iloc[order].reset_index(drop=True)


def change(before: str, after: str) -> str:
    """How a recipe's outcome compares with the baseline's: fail->pass, pass->fail, both-pass or both-fail."""
    if before == "pass":
        return "both-pass" if after == "pass" else "pass->fail"
    return "fail->pass" if after == "pass" else "both-fail"


DELTAS = {"load_peak_mib": "mem_gpu_load_peak_mib", "forward_peak_mib": "mem_gpu_forward_peak_mib",
          "load_s": "time_load_s"}


def fix_pairs(latest: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Pair every recipe's latest result with the baseline's in the same cell, shape and budget (skips left out).
    Deltas (recipe minus baseline) of load-peak, forward-peak GPU memory and load time are set where both passed."""
    measured = latest[(latest["outcome"] != "skip") & (latest["stage"] != "install")]  # a recipe can't mend an install
    keep = KEY + ["outcome", "signature", "last_seen"] + list(DELTAS.values())
    plain = measured[measured["recipe"] == baseline][keep].drop(columns="recipe")
    other = measured[measured["recipe"] != baseline][keep + ["cell_path"]]
    pairs = other.merge(plain, on=CELL + ["shape", "budget"], suffixes=("", "_plain"), validate="many_to_one")
    pairs["plain_outcome"] = pairs.pop("outcome_plain")
    pairs["plain_signature"] = pairs.pop("signature_plain")
    pairs["change"] = [change(b, a) for b, a in zip(pairs["plain_outcome"], pairs["outcome"])]
    both = pairs["change"] == "both-pass"
    for name, column in DELTAS.items():
        delta = pd.to_numeric(pairs[column], errors="coerce") - pd.to_numeric(pairs[f"{column}_plain"],
                                                                              errors="coerce")
        pairs[f"delta_{name}"] = delta.where(both)  # a failed run's memory and time say little: both passed only
    columns = ["recipe"] + CELL + ["shape", "budget", "plain_outcome", "outcome", "change", "plain_signature",
                                   "signature", "last_seen",
                                   "last_seen_plain", "cell_path"] + [f"delta_{n}" for n in DELTAS]
    c = {name: pairs[name].tolist() for name in ["recipe"] + CELL + ["shape", "budget"]}  # lists, not .iat per row
    order = sorted(range(len(pairs)), key=lambda i: (
        c["recipe"][i], c["runner"][i], version_key(c["torch"][i]), version_key(c["bnb"][i]),
        version_key(c["transformers"][i]), c["shape"][i], c["budget"][i]))
    return pairs[columns].iloc[order].reset_index(drop=True)


def fix_effects(pairs: pd.DataFrame, baseline: str, recipes: Iterable[str] = ()) -> pd.DataFrame:
    """Per recipe: cells, pairs, fail->pass, pass->fail, both-pass, both-fail, and the median deltas (recipe minus
    baseline) of load-peak and forward-peak GPU memory and load time over the pairs where both passed."""
    names = sorted(set(pairs["recipe"]) | set(recipes) - {baseline})
    out = []
    for name in names:
        mine = pairs[pairs["recipe"] == name]
        counts = mine["change"].value_counts()
        row: dict[str, Any] = {"recipe": name, "cells": int(mine[CELL].drop_duplicates().shape[0]),
                               "pairs": len(mine)}
        for label in ("fail->pass", "pass->fail", "both-pass", "both-fail"):
            row[label] = int(counts.get(label, 0))
        for delta in DELTAS:
            values = mine[f"delta_{delta}"].dropna()
            row[f"median_delta_{delta}"] = float(values.median()) if len(values) else float("nan")
        out.append(row)
    columns = ["recipe", "cells", "pairs", "fail->pass", "pass->fail", "both-pass", "both-fail"] + [
        f"median_delta_{d}" for d in DELTAS]
    return pd.DataFrame(out, columns=columns)


def aggregate(records: Iterable[Record], problems: Iterable[object] = (), recipes: Iterable[str] = (),
              classify: Callable[[Record], str | None] | None = None,
              find_warnings: Callable[[str], list[str]] | None = None,
              use_signatures: bool = True, baseline: str | None = None,
              releases: dict[str, Any] | None = None) -> Aggregate:
    """Build every aggregate from records. `problems` (e.g. RecordProblem from reading) are carried along as text
    in the order read (files sorted, then by line); `recipes` adds recipes with no records yet to the effects
    table. Signatures come from diagnose.signatures unless `classify`/`find_warnings` are given or `use_signatures`
    is False. `baseline` is the recipe the others are compared against (default: the one the default axes file
    names). `releases` is the PyPI snapshot of the results dir (`discover.read_snapshot`), carried along."""
    if baseline is None:
        from matrix.measure.axes import load_axes

        baseline = load_axes().baseline
    if use_signatures and classify is None and find_warnings is None:
        classify, find_warnings = _signature_functions()
    records = list(records)  # pre-quantized records (with `saved_with`) stay out of the frames: prequant.py
    frame, own = tidy((r for r in records if not r.saved_with), classify, find_warnings)
    return from_tidy(frame, tuple(str(p) for p in problems) + tuple(own), recipes, baseline, releases,
                     tuple(r for r in records if r.saved_with))


def from_tidy(frame: pd.DataFrame, problems: tuple[str, ...], recipes: Iterable[str] = (), baseline: str = "plain",
              releases: dict[str, Any] | None = None, prequant: tuple[Record, ...] = ()) -> Aggregate:
    """Every aggregate from the tidy frame (`tidy`/`finish`); `problems` as text."""
    latest = latest_with_history(frame[is_result(frame)])
    pairs = fix_pairs(latest, baseline)
    return Aggregate(frame=frame, latest=latest, verdicts=cell_verdicts(latest, baseline), pairs=pairs,
                     effects=fix_effects(pairs, baseline, recipes), problems=problems, releases=releases,
                     prequant=prequant)


def load(results_dir: Path, recipes: Iterable[str] = (), warn: bool = True, baseline: str | None = None) -> Aggregate:
    """Read every results/**/*.jsonl and aggregate. Malformed lines are skipped and reported (file:line) in
    `problems` and, with `warn`, printed as warnings on stderr. Raises ResultsError if the dir is missing."""
    from matrix.measure.discover import read_snapshot

    problems: list[records_io.RecordProblem] = []
    good = records_io.iter_results(Path(results_dir), problems)  # streamed: a record is dropped once it is a row
    agg = aggregate(good, problems, recipes, baseline=baseline,  # `problems` is filled by the time it is read
                    releases=read_snapshot(Path(results_dir)))
    if warn:
        for problem in agg.problems:
            print(f"warning: {problem}", file=sys.stderr)
    return agg

"""Findings: what the pages state, as pure functions over the aggregate frames (no Jinja, no I/O).

Each function takes frames of `matrix.publish.aggregate.Aggregate` (and the recipe names / signature catalogue where it
needs them) and returns plain rows. The pages render these rows, and `exports()` publishes the same rows under
`data/` so every number a page states can be fetched.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from matrix.measure import runner as runners_mod
from matrix.publish import claims, wayout
from matrix.publish.aggregate import CELL, FAILED, Aggregate, is_result, version_key
from matrix.publish.aggregate import VERDICT_COLUMNS, cell_verdict  # the site's verdict rule, applied per run here

WHERE = CELL + ["shape", "budget"]  # one situation: a cell, a shape and a budget
# the columns of a latest row that wayout's causes and the error pages' evidence read (to_dict of every column of
# the latest frame, about 100, cost tens of seconds at 100,000 records)
CAUSE_COLUMNS = ["recipe", "shape", "budget", "outcome", "stage", "signature", "error_type", "error_message",
                 "version_torch", "cell_path"]
EVIDENCE_COLUMNS = CELL + ["recipe", "shape", "budget", "outcome", "last_seen", "stage", "error_type",
                           "error_message", "stderr_tail", "cell_path", "signature"]
CHANGES = ("fail->pass", "pass->fail", "both-pass", "both-fail")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts."""
    return frame.to_dict(orient="records")  # type: ignore[return-value]


def group_rows(frame: pd.DataFrame) -> dict[tuple, list[dict[str, Any]]]:
    """`records(frame)` split per cell (CELL key), keeping the frame's row order within each cell."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in records(frame):
        groups.setdefault(tuple(row[k] for k in CELL), []).append(row)
    return groups


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or str(value) in ("", "[]")


def runner_history(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per runner: the facts of its newest record, plus other values seen for any fact over time."""
    facts: dict[str, dict[str, Any]] = {}
    columns = [c for c in frame.columns if c.startswith("runner_")]
    for slug, rows in frame.groupby("runner", sort=True):
        newest = rows.sort_values(["time", "run_id"], kind="mergesort", na_position="first").iloc[-1]
        items = []
        for column in columns:
            value = newest[column]
            seen = sorted({str(v) for v in rows[column].dropna().unique() if str(v) not in ("", "[]")} - {str(value)})
            if _missing(value) and not seen:
                continue
            items.append({"name": column.removeprefix("runner_"), "value": value, "seen": seen})
        facts[str(slug)] = {"slug": slug, "kind": newest["runner_kind"], "facts": items, "records": len(rows),
                            "first_seen": rows["date"].min(), "last_seen": rows["date"].max(),
                            "label": runners_mod.label(newest)}
    return facts


def grid(verdicts: pd.DataFrame, extra_bnb: Iterable[str], causes: dict[str, dict[str, Any]] | None = None
         ) -> dict[str, Any]:
    """Heatmap grid of one runner: columns bitsandbytes releases (version order), rows torch builds grouped by
    transformers (newest first); each square a verdict row with `why` (the tooltip's cause and way out) or None."""
    causes = causes or {}
    columns = sorted(set(verdicts["bnb"]) | set(extra_bnb), key=version_key)
    by = {(r["torch"], r["transformers"], r["bnb"]): dict(r, why=wayout.summary(r, causes.get(r["cell_path"])))
          for r in records(verdicts)}
    groups = []
    for tf in sorted(set(verdicts["transformers"]), key=version_key, reverse=True):
        torches = sorted({t for t, f, _ in by if f == tf}, key=lambda t: (version_key(t), t))
        groups.append({"transformers": tf, "rows": [{"torch": t, "cells": [by.get((t, tf, b)) for b in columns]}
                                                    for t in torches]})
    return {"columns": columns, "groups": groups}


def changed_errors(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Where the baseline and the recipe both failed but with different errors: (baseline's, the recipe's, count)."""
    both = pairs[(pairs["change"] == "both-fail") & (pairs["plain_signature"] != pairs["signature"])]
    counts = both.groupby(["plain_signature", "signature"]).size()
    return [{"before": b, "after": a, "count": int(n)} for (b, a), n in counts.items()]


def multi_gpu(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs measured on runners with several GPUs."""
    return pairs[[runners_mod.gpu_count(str(s)) > 1 for s in pairs["runner"]]]


def known(slug: str, catalogue: dict[str, Any]) -> str:
    """The signature's slug if the catalogue has a page for it, else 'unclassified'."""
    return slug if slug in catalogue else "unclassified"


def rescued_by(agg: Aggregate, recipe: str, baseline: str, catalogue: dict[str, Any]) -> list[dict[str, Any]]:
    """Signatures of the baseline's failures that this recipe turned into passes, with counts."""
    pairs = agg.pairs[(agg.pairs["recipe"] == recipe) & (agg.pairs["change"] == "fail->pass")]
    plain = agg.latest[agg.latest["recipe"] == baseline]
    hit = plain.merge(pairs[WHERE], on=WHERE)
    counts = hit["signature"].map(lambda s: known(s, catalogue)).value_counts().sort_index()
    return [{"slug": s, "count": int(c)} for s, c in counts.items()]


def budget_label(budget: float | None) -> str | None:
    return f"{budget:g}" if budget else None


def budget_blocks(latest: pd.DataFrame, baseline: str) -> list[dict[str, Any]]:
    """Per cell and shape measured under emulated VRAM budgets: recipe x budget outcomes and, per recipe, the
    smallest budget it passed under (None: on the whole card alone), the smaller budgets it failed under and
    those it was never run under (a budget not run is not a failure: 'only the whole card' needs them all run).
    Each outcome is the row's recipe, budget, outcome and signature (what the budgets page and data/budgets.json
    show)."""
    keys = CELL + ["shape"]
    budgeted_keys = set(latest.loc[latest["budget_gib"].notna(), keys].itertuples(index=False, name=None))
    if not budgeted_keys:
        return []
    # one pass over the few columns used, only the cells and shapes with a budgeted run (a frame and a
    # to_dict of ~80 columns per cell, shape and recipe cost minutes at 100,000 records)
    columns = keys + ["recipe", "budget_gib", "outcome", "signature", "cell_path", "last_seen"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in records(latest[columns]):
        key = tuple(row[k] for k in keys)
        if key in budgeted_keys:
            groups.setdefault(key, []).append(row)
    blocks = []
    for key in sorted(groups):
        mine = groups[key]
        budgets = sorted({float(r["budget_gib"]) for r in mine if not pd.isna(r["budget_gib"])})
        columns_ = [None, *budgets]
        table, smallest = [], []
        for recipe in sorted({r["recipe"] for r in mine}, key=lambda r: (r != baseline, r)):
            by_budget = {None if pd.isna(r["budget_gib"]) else float(r["budget_gib"]): r
                         for r in mine if r["recipe"] == recipe}
            table.append({"recipe": recipe, "outcomes": [by_budget.get(c) for c in columns_]})
            passed = [c for c in columns_ if c in by_budget and by_budget[c]["outcome"] == "pass"]
            if passed:
                least = min((c for c in passed if c), default=None)
                below = [c for c in budgets if least is None or c < least]  # budgets under the smallest pass
                smallest.append({"recipe": recipe, "budget": budget_label(least),
                                 "failed": [budget_label(c) for c in below if c in by_budget],
                                 "not_run": [budget_label(c) for c in below if c not in by_budget]})
        blocks.append({**dict(zip(keys, key)), "columns": [budget_label(c) for c in columns_],
                       "rows": table, "smallest": smallest, "cell_path": mine[0]["cell_path"],
                       "last_seen": max(r["last_seen"] for r in mine if not pd.isna(r["budget_gib"]))})
    return blocks


def passing(latest: pd.DataFrame) -> dict[tuple, set[str]]:
    """(cell..., shape, budget) -> the recipes that passed there."""
    out: dict[tuple, set[str]] = {}
    for row in records(latest.loc[latest["outcome"] == "pass", WHERE + ["recipe"]]):
        out.setdefault(tuple(row[k] for k in WHERE), set()).add(row["recipe"])
    return out


def error_hits(latest: pd.DataFrame, slug: str, sig: Any) -> pd.DataFrame:
    """The latest rows where a signature occurred: a warning in a pass, or the classified cause of a failure."""
    failed = latest[latest["outcome"].isin(FAILED)]
    if sig is not None and getattr(sig, "kind", "") == "warning":
        return latest[latest["warnings"].map(lambda ws: slug in str(ws).split()).astype(bool)]
    if slug == "unclassified":
        return failed[failed["signature"].isin(["", "unclassified"])]
    return failed[failed["signature"] == slug]


def evidence(rows: pd.DataFrame, passed: dict[tuple, set[str]]) -> list[dict[str, Any]]:
    """Rows where a signature occurred, each with the recipes that passed in the same cell, shape, budget."""
    return [dict(row, passed_with=sorted(passed.get(tuple(row[k] for k in WHERE), set()) - {row["recipe"]}))
            for row in records(rows[[c for c in EVIDENCE_COLUMNS if c in rows]])]


def fix_stats(latest: pd.DataFrame, hits: pd.DataFrame, recipes: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per recipe, over the distinct (cell, shape, budget) where a signature occurred: passed, failed, not
    measured (missing or skipped)."""
    where = hits[WHERE].drop_duplicates()
    mine = latest.merge(where, on=WHERE)
    stats = {}
    for recipe in sorted(set(recipes) | set(latest["recipe"])):
        rows = mine[mine["recipe"] == recipe]
        passed = int((rows["outcome"] == "pass").sum())
        failed = int(rows["outcome"].isin(FAILED).sum())
        stats[recipe] = {"situations": len(where), "passed": passed, "failed": failed,
                         "unmeasured": len(where) - passed - failed}
    return stats


def verdict_changes(frame: pd.DataFrame, baseline: str) -> list[dict[str, Any]]:
    """Each time a run changed a cell's verdict, newest first: the cell, the verdict before and after, and the run
    (id and time). A cell's verdict after a run is the one of its latest records up to that run, by the same rule
    as the site's (aggregate's cell verdict); a cell's first run is not a change."""
    changes = []
    # a run's time is its first record's: records of one run carry their own times, seconds apart
    frame = frame[is_result(frame)]  # as the site's latest: a network failure decides nothing
    ordered = frame.assign(run_time=frame.groupby("run_id")["time"].transform("min"))
    ordered = ordered.sort_values(["run_time", "run_id", "time"], kind="mergesort")
    # plain tuples per cell, in that order (a frame per cell, split from all ~80 columns, cost minutes at 100k)
    columns = ["run_time", "run_id", "recipe", "shape", "budget", "outcome"]
    names = CELL + columns + ["cell_path"] + list(VERDICT_COLUMNS)
    cells: dict[tuple, list[tuple]] = {}
    for row in zip(*(ordered[c].tolist() for c in names)):
        cells.setdefault(row[:len(CELL)], []).append(row[len(CELL):])
    for cell in sorted(cells):
        rows = cells[cell]
        if len({r[1] for r in rows}) < 2:
            continue  # measured once: nothing to change from
        latest: dict[tuple, tuple[int, str]] = {}  # (recipe, shape, budget) -> (row number, outcome), newest so far
        runs: dict[tuple, list] = {}
        for label, values in enumerate(rows):
            runs.setdefault((values[0], values[1]), []).append((label, *values[2:6]))

        def verdict(latest: dict[tuple, tuple[int, str]] = latest, rows: list[tuple] = rows) -> str:
            return cell_verdict([rows[label][7:] for label, _ in latest.values()], baseline)[0]

        before = None  # computed only when needed: most runs repeat the outcomes they replace
        for n, ((time, run_id), run) in enumerate(runs.items()):
            moved = n > 0 and any(latest.get((r, s, b), (0, None))[1] != outcome for _, r, s, b, outcome in run)
            if moved and before is None:
                before = verdict()
            latest.update({(r, s, b): (label, outcome) for label, r, s, b, outcome in run})
            if not moved:
                continue  # the same outcomes again (or only newer times): the same verdict
            after = verdict()
            if after != before:
                changes.append({**dict(zip(CELL, cell)), "before": before, "after": after, "run_id": run_id,
                                "time": pd.Timestamp(time).isoformat(), "cell_path": rows[0][6]})
            before = after
    return sorted(changes, key=lambda c: (c["time"], c["run_id"]), reverse=True)


def first_measured(frame: pd.DataFrame, baseline: str) -> list[dict[str, Any]]:
    """Each run that measured cells for the first time, newest first: its runner, time (its first record's), the
    cells with their verdict after that run (by the site's rule, over that run's results alone) and the versions
    they span. The feed's entries for new cells, beside `verdict_changes`."""
    frame = frame[is_result(frame)]
    if frame.empty:
        return []
    frame = frame.assign(run_time=frame.groupby("run_id")["time"].transform("min"))
    frame = frame.sort_values(["run_time", "run_id", "time"], kind="mergesort")
    first_run = frame.groupby(CELL, sort=False)["run_id"].transform("first")
    # plain tuples (a frame per run and cell, split from all ~100 columns, cost over a minute at 100k records)
    names = ["run_time", "run_id", *CELL, "cell_path", "recipe", "shape", "budget", *VERDICT_COLUMNS]
    first = frame[frame["run_id"] == first_run]
    by_run: dict[tuple, dict[tuple, list[tuple]]] = {}
    for row in zip(*(first[c].tolist() for c in names)):  # in run, then time order
        if pd.isna(row[0]):
            continue  # no parseable time (as groupby drops a missing key)
        by_run.setdefault(row[:2], {}).setdefault(row[2:6], []).append(row)
    runs = []
    for (time, run_id), by_cell in sorted(by_run.items(), key=lambda kv: kv[0]):
        cells = []
        for cell in sorted(by_cell):
            mine = by_cell[cell]
            last = {(r[7], r[8], r[9]): n for n, r in enumerate(mine)}  # the newest of each recipe, shape, budget
            newest = [mine[n][10:] for n in sorted(last.values())]
            cells.append({"cell_path": mine[0][6], "verdict": cell_verdict(newest, baseline)[0]})
        counts = Counter(c["verdict"] for c in cells)
        runs.append({"run_id": run_id, "time": pd.Timestamp(time).isoformat(),
                     "runner": next(iter(by_cell.values()))[0][2],  # the run's first record's (dicts keep order)
                     "cells": cells, "verdicts": {str(v): counts[v] for v in sorted(counts)},
                     **{k: sorted({c[CELL.index(k)] for c in by_cell}, key=version_key)
                        for k in ("torch", "bnb", "transformers")}})
    return sorted(runs, key=lambda r: (r["time"], r["run_id"]), reverse=True)


@dataclass
class Findings:
    """Every page-level finding of one aggregate, computed once (the pages and `exports()` read it)."""

    runners: dict[str, dict[str, Any]]
    budgets: list[dict[str, Any]]
    fixes: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe -> effect, rescued, changed errors
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # slug -> count, cells, fix stats, way outs
    causes: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell path -> cause in words, way out
    releases: list[dict[str, Any]] = field(default_factory=list)  # newest on PyPI per package, measured or not
    changes: list[dict[str, Any]] = field(default_factory=list)  # verdict changes between runs, newest first
    firsts: list[dict[str, Any]] = field(default_factory=list)  # runs that measured cells first, newest first


def effect_split(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """One recipe's pairs against the baseline split by runner and transformers major: per group the cells,
    pairings, each kind of change and the median load-time delta where both passed."""
    out = []
    keys = pairs.assign(major=pairs["transformers"].map(wayout.major))
    for (slug, major), rows in keys.groupby(["runner", "major"], sort=True):
        counts = rows["change"].value_counts()
        delta = rows["delta_load_s"].dropna()
        out.append({"runner": slug, "major": major, "cells": int(rows[CELL].drop_duplicates().shape[0]),
                    "pairs": len(rows), **{c: int(counts.get(c, 0)) for c in CHANGES},
                    "median_delta_load_s": float(delta.median()) if len(delta) else None})
    return out


def newest_releases(snapshot: dict[str, Any] | None, latest: pd.DataFrame,
                    in_axes: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Per package of the PyPI snapshot: its newest release, when the snapshot was taken, whether the axes list
    it and the cells (runners) with a measured record of it (torch builds match on their public version)."""
    if not snapshot:
        return []
    columns = {"torch": "torch", "bitsandbytes": "bnb", "transformers": "transformers"}
    measured = latest[latest["outcome"] != "skip"]
    out = []
    for package, info in sorted(snapshot.get("packages", {}).items()):
        newest = str(info.get("newest", ""))
        if package not in columns or not newest:
            continue
        values = measured[columns[package]].map(lambda v: str(v).split("+")[0])
        mine = measured[values == newest]
        out.append({"package": package, "newest": newest, "fetched": str(snapshot.get("fetched", ""))[:10],
                    "in_axes": newest in {v.split("+")[0] for v in in_axes.get(package, set())},
                    "cells": int(mine[CELL].drop_duplicates().shape[0]),
                    "runners": sorted(set(mine["runner"]))})
    return out


def compute(agg: Aggregate, recipes: Iterable[str], baseline: str, catalogue: dict[str, Any],
            in_axes: dict[str, set[str]] | None = None) -> Findings:
    """Every finding of `agg`: runners, budgets, per recipe, per error signature, per failing cell (cause and
    way out) and the newest releases on PyPI (`in_axes`: package -> versions the axes list)."""
    recipes = list(recipes)
    found = Findings(runners=runner_history(agg.frame), budgets=budget_blocks(agg.latest, baseline),
                     changes=verdict_changes(agg.frame, baseline), firsts=first_measured(agg.frame, baseline))
    verdicts = records(agg.verdicts)
    cause_columns = [c for c in CELL + CAUSE_COLUMNS if c in agg.latest]  # what wayout reads: to_dict of all ~100
    found.causes = wayout.cell_causes(verdicts, group_rows(agg.latest[cause_columns]), baseline, catalogue)
    found.releases = newest_releases(agg.releases, agg.latest, in_axes or {})
    cells = {tuple(c[k] for k in CELL): c for c in verdicts}
    effects = {r["recipe"]: r for r in records(agg.effects)}
    for name in sorted(set(recipes) | set(effects) | set(agg.latest["recipe"])):
        pairs = agg.pairs[agg.pairs["recipe"] == name]
        found.fixes[name] = {"effect": effects.get(name), "rescued": rescued_by(agg, name, baseline, catalogue),
                             "changed_errors": changed_errors(pairs), "split": effect_split(pairs),
                             "claim_scope": claims.scope(pairs, claims.load()[name]) if name in claims.load() else None}
    for slug in sorted(set(catalogue) | {"unclassified"}):
        hits = error_hits(agg.latest, slug, catalogue.get(slug))
        hit_cells = [cells[k] for k in sorted(set(map(tuple, hits[CELL].itertuples(index=False))), key=_cell_order)
                     if k in cells]
        found.errors[slug] = {"count": len(hits), "cells": len(hit_cells),
                              "cell_paths": [c["cell_path"] for c in hit_cells],
                              "fix_stats": fix_stats(agg.latest, hits, recipes),
                              "way_outs": wayout.error_way_outs(hit_cells, found.causes, cells)}
    return found


def _cell_order(key: tuple) -> tuple:
    return (key[0],) + tuple(version_key(v) for v in key[1:])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and pd.isna(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def exports(found: Findings) -> dict[str, bytes]:
    """The findings published under /data/ next to the records: runners.json, budgets.json, fixes.json,
    errors.json, causes.json (why each cell that does not simply work fails, and its way out),
    newest-releases.json, changes.json (verdict changes between runs, also the Atom feed). Deterministic bytes for
    the same records."""
    budgets = [{**{k: b[k] for k in CELL + ["shape", "cell_path", "last_seen", "smallest"]},
                "budgets": b["columns"],
                "outcomes": {r["recipe"]: [o["outcome"] if o else None for o in r["outcomes"]] for r in b["rows"]}}
               for b in found.budgets]
    data = {"runners.json": list(found.runners.values()), "budgets.json": budgets,
            "fixes.json": found.fixes, "errors.json": found.errors, "causes.json": found.causes,
            "newest-releases.json": found.releases, "changes.json": found.changes}
    return {name: (json.dumps({"schema": 1, "items": _jsonable(value)}, indent=1, sort_keys=True,
                              ensure_ascii=True, allow_nan=False) + "\n").encode()
            for name, value in data.items()}

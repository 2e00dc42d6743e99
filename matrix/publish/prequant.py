"""Pre-quantized checkpoints on the site: the records with `saved_with` (see matrix/measure/prequant.py) as a grid
writer x reader per runner, a page per reader release, the layouts each release writes and reads, and the way
out of a failing pair ("re-save with X", "load with Y"). Pure functions over records and frames; pages.py calls
`index_context` and `reader_contexts`.

A release is a (bitsandbytes, transformers) pair on one torch build; the cell of this part is (writer, reader)
per runner and recipe (nf4/fp4, double quant on/off), the newest record of each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from matrix import urls
from matrix.diagnose.signatures import classify_record
from matrix.measure.readback import PREQUANT_VERSION
from matrix.measure.records import Record
from matrix.publish.aggregate import FAILED, version_key

ROOT = "prequantized/"
SIDES = ("bnb", "transformers", "torch")
KEY = ["runner", "role", "recipe", "w_bnb", "w_transformers", "w_torch", "r_bnb", "r_transformers", "r_torch"]
COLUMNS = KEY + ["runner_kind", "gpu", "quant_type", "double_quant", "outcome", "stage", "error_type",
                 "error_message", "signature", "logits_rel_diff", "weight_rel_diff", "bit_exact", "exact_layers",
                 "layout", "quant_config", "timestamp"]


def frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per pre-quantized record: writer (w_*) and reader (r_*) versions, outcome, diffs, layout. Records
    of an earlier PREQUANT_VERSION measured with other checks: they stay in results/ as history, not here."""
    rows = []
    for r in records:
        if r.requested.get("probe_version") != PREQUANT_VERSION:
            continue
        who, checks = r.saved_with, r.checks
        compared = checks.get("layers_compared")
        rows.append({
            "runner": str(r.runner.get("slug", "")), "runner_kind": str(r.runner.get("kind", "")),
            "gpu": str(r.runner.get("gpu_name", "") or ""), "role": str(checks.get("role", "read")),
            "recipe": r.recipe, "w_bnb": str(who.get("bitsandbytes", "")),
            "w_transformers": str(who.get("transformers", "")), "w_torch": str(who.get("torch", "")),
            "r_bnb": str(r.requested.get("bnb", "")), "r_transformers": str(r.requested.get("transformers", "")),
            "r_torch": str(r.requested.get("torch", "")), "quant_type": str(who.get("quant_type", "")),
            "double_quant": bool(who.get("double_quant", False)), "outcome": r.outcome, "stage": r.stage,
            "error_type": r.error_type, "error_message": r.error_message,
            "signature": (classify_record(r) or "") if r.outcome in FAILED else "",
            "logits_rel_diff": checks.get("logits_rel_diff"), "weight_rel_diff": checks.get("weight_rel_diff"),
            "bit_exact": checks.get("first_layer_bit_exact"),
            "exact_layers": compared is not None and checks.get("layers_bit_exact") == compared,
            "layout": " ".join(map(str, checks.get("layout") or [])),
            "quant_config": " ".join(map(str, checks.get("quant_config") or [])), "timestamp": r.timestamp})
    return pd.DataFrame(rows, columns=COLUMNS)


def latest(rows: pd.DataFrame) -> pd.DataFrame:
    """The newest record per (runner, role, recipe, writer, reader)."""
    if rows.empty:
        return rows
    return rows.sort_values("timestamp", kind="mergesort").groupby(KEY, sort=True).tail(1).reset_index(drop=True)


def release(bnb: str, transformers: str) -> str:
    return f"bnb {bnb} / transformers {transformers}"


def _release_key(pair: tuple[str, str]) -> tuple:
    return version_key(pair[0]), version_key(pair[1])


def reader_path(bnb: str, transformers: str) -> str:
    """prequantized/bnb-<v>/transformers-<v>/: every runner's reads by that release."""
    return f"{ROOT}bnb-{urls.slug(bnb)}/transformers-{urls.slug(transformers)}/"


def _verdict(group: pd.DataFrame) -> dict[str, Any]:
    passed = int((group["outcome"] == "pass").sum())
    failing = group[group["outcome"] != "pass"]
    return {"passed": passed, "total": len(group), "ok": passed == len(group),
            "signature": str(failing["signature"].iloc[0]) if len(failing) else "",
            "stage": str(failing["stage"].iloc[0]) if len(failing) else "",
            "recipes": sorted(failing["recipe"]),
            "max_logits_diff": _max(group["logits_rel_diff"]), "max_weight_diff": _max(group["weight_rel_diff"])}


def _max(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.max()) if len(values) else None


def _nearest(options: list[tuple[str, str]], target: tuple[str, str]) -> tuple[str, str] | None:
    """The release closest to `target`: the same transformers first, then the nearest bitsandbytes, newer on ties."""
    if not options:
        return None
    lines = sorted({o[0] for o in options} | {target[0]}, key=version_key)
    return min(sorted(set(options), key=_release_key, reverse=True),
               key=lambda o: (o[1] != target[1], abs(lines.index(o[0]) - lines.index(target[0]))))


def way_out(reads: pd.DataFrame, writer: tuple[str, str], reader: tuple[str, str], recipe: str) -> dict[str, str]:
    """For a failing (writer, reader, recipe) on one runner: a writer this reader loads ('re-save with') and a
    reader that loads this writer's checkpoint ('load with'), both measured; '' where none was."""
    ok = reads[(reads["recipe"] == recipe) & (reads["outcome"] == "pass")]
    by_reader = ok[(ok["r_bnb"] == reader[0]) & (ok["r_transformers"] == reader[1])]
    of_writer = ok[(ok["w_bnb"] == writer[0]) & (ok["w_transformers"] == writer[1])]
    resave = _nearest(list(zip(by_reader["w_bnb"], by_reader["w_transformers"])), writer)
    load = _nearest(list(zip(of_writer["r_bnb"], of_writer["r_transformers"])), reader)
    return {"resave": release(*resave) if resave else "", "load": release(*load) if load else ""}


def runner_grid(rows: pd.DataFrame, runner: str) -> dict[str, Any]:
    """One runner's grid: writers (rows, with their own write outcome) x readers (columns)."""
    mine = rows[rows["runner"] == runner]
    reads, writes = mine[mine["role"] == "read"], mine[mine["role"] == "write"]
    writers = sorted(set(zip(mine["w_bnb"], mine["w_transformers"])), key=_release_key)
    readers = sorted(set(zip(reads["r_bnb"], reads["r_transformers"])), key=_release_key)
    grid, failures = [], []
    for w in writers:
        wrote = writes[(writes["w_bnb"] == w[0]) & (writes["w_transformers"] == w[1])]
        cells = []
        for r in readers:
            pair = reads[(reads["w_bnb"] == w[0]) & (reads["w_transformers"] == w[1]) & (reads["r_bnb"] == r[0])
                         & (reads["r_transformers"] == r[1])]
            cell = _verdict(pair) if len(pair) else None
            if cell and not cell["ok"]:
                for _, bad in pair[pair["outcome"] != "pass"].iterrows():
                    failures.append({"writer": release(*w), "reader": release(*r), "recipe": bad["recipe"],
                                     "signature": bad["signature"], "stage": bad["stage"],
                                     "error_type": bad["error_type"], "error_message": bad["error_message"],
                                     "reader_path": reader_path(*r), **way_out(reads, w, r, bad["recipe"])})
            cells.append(cell)
        grid.append({"writer": release(*w), "write": _verdict(wrote) if len(wrote) else None, "cells": cells})
    first = mine.iloc[0] if len(mine) else None
    return {"runner": runner, "kind": str(first["runner_kind"]) if first is not None else "",
            "gpu": str(first["gpu"]) if first is not None else "",
            "readers": [{"label": release(*r), "path": reader_path(*r)} for r in readers],
            "grid": grid, "failures": failures, "reads": len(reads), "writes": len(writes),
            "passed": int((reads["outcome"] == "pass").sum()),
            "max_logits_diff": _max(reads["logits_rel_diff"]), "max_weight_diff": _max(reads["weight_rel_diff"]),
            "bit_exact": int((reads["bit_exact"] == True).sum()),  # noqa: E712 - None stays out
            "not_exact": not_exact(reads), "families": families(reads)}


def families(reads: pd.DataFrame) -> list[list[str]]:
    """The bitsandbytes lines that dequantize each other's saved codes bit-identically (every compared layer of
    every passing load between them, both ways), as groups in version order: where a group ends, a release changed
    how it dequantizes (or computes) 4-bit weights on this runner."""
    ok = reads[reads["outcome"] == "pass"]
    lines = sorted(set(ok["r_bnb"]) | set(ok["w_bnb"]), key=version_key)
    exact = {(r, w): bool(g["exact_layers"].astype(bool).all()) for (r, w), g in ok.groupby(["r_bnb", "w_bnb"])}
    groups: list[list[str]] = []
    for line in lines:
        for group in groups:
            if all(exact.get((line, o), True) and exact.get((o, line), True) for o in group):
                group.append(line)
                break
        else:
            groups.append([line])
    return groups


def not_exact(reads: pd.DataFrame) -> list[str]:
    """'reader bnb X reading bnb Y' for each pair of bitsandbytes lines whose passing loads were not bit-identical
    to the writer's dequantized weights in every compared layer (within tolerance, but rounded differently)."""
    ok = reads[(reads["outcome"] == "pass") & ~reads["exact_layers"].astype(bool)]
    pairs = sorted(set(zip(ok["r_bnb"], ok["w_bnb"])), key=lambda p: (version_key(p[0]), version_key(p[1])))
    return [f"bnb {r} reading bnb {w}" for r, w in pairs]


def layouts(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per recipe and layout (the tensor names and dtypes saved for one quantized linear): the releases that
    wrote it and those that read it back passing, over every runner."""
    out = []
    writes = rows[(rows["role"] == "write") & (rows["outcome"] == "pass") & (rows["layout"] != "")]
    reads = rows[(rows["role"] == "read") & (rows["outcome"] == "pass")]
    for (recipe, layout), group in writes.groupby(["recipe", "layout"], sort=True):
        read = reads[(reads["recipe"] == recipe) & (reads["layout"] == layout)]
        out.append({"recipe": recipe, "tensors": layout.split(), "quant_config": group["quant_config"].iloc[-1].split(),
                    "writers": [release(*p) for p in sorted(set(zip(group["w_bnb"], group["w_transformers"])),
                                                            key=_release_key)],
                    "readers": [release(*p) for p in sorted(set(zip(read["r_bnb"], read["r_transformers"])),
                                                            key=_release_key)]})
    return out


def changes(rows: pd.DataFrame) -> list[str]:
    """What changed between writer releases, as sentences: layouts that differ for the same recipe."""
    notes = []
    for item_recipe, group in (rows[(rows["role"] == "write") & (rows["outcome"] == "pass")]
                               .groupby("recipe", sort=True)):
        found = group["layout"].unique()
        if len(found) > 1:
            notes.append(f"{item_recipe}: {len(found)} different layouts written")
    return notes


def index_context(records: Iterable[Record]) -> dict[str, Any]:
    rows = latest(frame(records))
    runners = sorted(rows["runner"].unique()) if len(rows) else []
    grids = [runner_grid(rows, r) for r in runners]
    recipes = sorted(rows["recipe"].unique()) if len(rows) else []
    return {"grids": grids, "layouts": layouts(rows), "changes": changes(rows), "recipes": recipes,
            "records": len(rows), "failing": sum(len(g["failures"]) for g in grids)}


def reader_contexts(records: Iterable[Record]) -> list[tuple[str, dict[str, Any]]]:
    """(path, context) per reader release: every writer it read, per runner and recipe, with the figures."""
    rows = latest(frame(records))
    reads = rows[rows["role"] == "read"]
    out = []
    for (bnb, tf), group in sorted(reads.groupby(["r_bnb", "r_transformers"]), key=lambda kv: _release_key(kv[0])):
        items = []
        for _, row in group.sort_values(["runner", "w_bnb", "w_transformers", "recipe"]).iterrows():
            w = (row["w_bnb"], row["w_transformers"])
            items.append({"runner": row["runner"], "writer": release(*w), "recipe": row["recipe"],
                          "outcome": row["outcome"], "signature": row["signature"], "stage": row["stage"],
                          "error_message": row["error_message"], "logits_rel_diff": row["logits_rel_diff"],
                          "weight_rel_diff": row["weight_rel_diff"], "bit_exact": row["bit_exact"],
                          **(way_out(reads[reads["runner"] == row["runner"]], w, (bnb, tf), row["recipe"])
                             if row["outcome"] != "pass" else {"resave": "", "load": ""})})
        wrote = rows[(rows["role"] == "write") & (rows["w_bnb"] == bnb) & (rows["w_transformers"] == tf)]
        out.append((reader_path(bnb, tf), {
            "release": release(bnb, tf), "items": items, "passed": int((group["outcome"] == "pass").sum()),
            "total": len(group), "writers": len(set(zip(group["w_bnb"], group["w_transformers"]))),
            "layouts": [{"recipe": rec, "tensors": lay.split()} for rec, lay in
                        sorted(set(zip(wrote["recipe"], wrote["layout"]))) if lay]}))
    return out

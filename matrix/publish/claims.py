"""The scope of a recipe's claim, from the records: which of the errors it is said to fix were ever provoked.

`claims.toml` names, per recipe, the error signatures its claim is about. `scope` counts, over that recipe's
pairings with the baseline (`Aggregate.pairs`), where the baseline failed with each named error, under which VRAM
budgets, and how often the recipe passed there. A claim about an error no pairing provoked is untested.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from matrix.measure import runner as runners_mod

CLAIMS = Path(__file__).with_name("claims.toml")


@functools.cache
def load(path: Path = CLAIMS) -> dict[str, list[str]]:
    """Recipe -> the error signatures its claim names (empty when the file names none)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {str(name): [str(e) for e in entry.get("errors", [])] for name, entry in data.items()}


def _budget(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return f"{text} GiB" if text else "the whole card"


def scope(pairs: pd.DataFrame, errors: list[str]) -> dict[str, Any]:
    """One recipe's pairings (its rows of `Aggregate.pairs`) against the errors its claim names: how many
    pairings in all and on GPU runners, and per error the pairings where the baseline failed with it
    ('provoked'), the budgets they were under and how many the recipe turned into passes."""
    gpu = pairs[[runners_mod.gpu_count(str(s)) > 0 for s in pairs["runner"]]] if len(pairs) else pairs
    out = []
    for slug in errors:
        hit = pairs[pairs["plain_signature"] == slug] if len(pairs) else pairs
        budgets = sorted({_budget(b) for b in hit["budget"]}, key=lambda b: (b == "the whole card", len(b), b)) \
            if len(hit) else []
        out.append({"slug": slug, "provoked": len(hit), "budgets": budgets,
                    "fixed": int((hit["change"] == "fail->pass").sum()) if len(hit) else 0,
                    "cells": int(hit["cell_path"].nunique()) if len(hit) else 0})
    return {"pairs": len(pairs), "gpu_pairs": len(gpu), "errors": out,
            "untested": [e["slug"] for e in out if not e["provoked"]]}

"""The check page (`check/index.html`) and its data file (`check/data.js`), and the measured cells `check` reads.

`measured_facts` turns the aggregate's GPU cells into the facts' `measured` part; the page ships the whole facts
dict as a script (it loads from file:// too, where a fetch of JSON would not) for `site/assets/check.js`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from matrix.check import facts as check_facts
from matrix.check.paste import PATTERNS


def measured_facts(latest: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, list[list[str]]]:
    """"sm_90|2.6.0+cu124|0.45.5" -> [[transformers, verdict, cell path, fixes], ...] for every cell measured on a GPU
    (fixes: the recipes that made it pass, for `works-with-fix`)."""
    if latest.empty or verdicts.empty or "runner_compute_capability" not in latest:
        return {}
    cc = {r: str(c) for r, c in zip(latest["runner"], latest["runner_compute_capability"].fillna(""))
          if str(c) not in ("", "nan")}
    out: dict[str, list[list[str]]] = {}
    for row in verdicts.itertuples():
        if row.runner in cc and row.verdict != "not-measured":
            key = f"sm_{cc[row.runner].replace('.', '')}|{row.torch}|{row.bnb}"
            out.setdefault(key, []).append([str(row.transformers), str(row.verdict), str(row.cell_path),
                                            str(row.fixes or "")])
    return out


def measured_from_results(results_dir: Path) -> dict[str, list[list[str]]]:
    """The measured part of the facts from a results folder (empty when it holds no records)."""
    from matrix.publish import aggregate

    if not Path(results_dir).is_dir():
        return {}
    agg = aggregate.load(Path(results_dir), warn=False)
    return measured_facts(agg.latest, agg.verdicts)


def page_facts(latest: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, Any]:
    """Everything the page's script needs: the facts plus the paste patterns."""
    return {**check_facts.load_facts(measured_facts(latest, verdicts)), "patterns": PATTERNS}


def check_page(site: Any) -> Iterator[Any]:
    """The check page: a form, a paste box and the answer, computed in the browser from check/data.js."""
    from matrix.publish.pages import Page

    data = check_facts.to_js(page_facts(site.agg.latest, site.agg.verdicts))
    examples = [("T4, torch 2.6, bitsandbytes 0.45.5", "gpu=T4&torch=2.6.0&bnb=0.45.5"),
                ("RTX 5090, torch 2.15: which bitsandbytes?", "gpu=RTX+5090&torch=2.15.0"),
                ("V100, a cu128 torch, bitsandbytes 0.46.1", "gpu=V100&torch=2.8.0%2Bcu128&bnb=0.46.1")]
    from matrix import urls

    yield Page("check/", {"examples": examples, "data_bytes": len(data), "site_url": urls.site_url()},
               files={"data.js": data})

"""A `Verdict` as text (the terminal), JSON (`--json`) or Markdown (a reply to paste into an issue)."""

from __future__ import annotations

import json
import urllib.parse

from matrix import urls
from matrix.check.engine import Verdict

WORDS = {"works": "works", "works-with-fix": "works with a fix", "fails": "fails", "unknown": "unknown"}
SOURCES = {"measured": "measured", "predicted": "predicted from the binaries", "reported": "reported in an issue",
           "none": "no source"}
LINK_KEYS = ("gpu", "torch", "bnb", "transformers", "os", "machine", "glibc", "driver", "cuda_runtime")


def page_link(verdict: Verdict) -> str:
    """The check page's URL that reproduces this answer (inputs as query parameters)."""
    given = verdict.setup
    query = [(k, str(given[k])) for k in LINK_KEYS if given.get(k)]
    query += [("env", f"{k}={v}") for k, v in given.get("env", {}).items()]
    return urls.absolute("check/") + ("?" + urllib.parse.urlencode(query) if query else "")


def headline(verdict: Verdict) -> str:
    r = verdict.resolved
    gpu = r.get("gpu") and (r["gpu"] if r["gpu"] == r.get("arch") else f"{r['gpu']} ({r.get('arch')})")
    what = ", ".join(x for x in (gpu, r.get("torch") and
                                 f"torch {r['torch']}", r.get("bnb") and f"bitsandbytes {r['bnb']}",
                                 r.get("platform")) if x)
    return f"{WORDS[verdict.verdict].upper()} ({SOURCES[verdict.source]}): 4-bit loading with {what}"


def as_text(verdict: Verdict) -> str:
    lines = [headline(verdict), ""]
    lines += [f"  - {fact}" for fact in verdict.facts]
    if verdict.fix:
        lines += ["", f"Fix: {verdict.fix}"]
    if verdict.cell:
        lines += ["", f"Measured cell: {urls.absolute(verdict.cell)}"]
    if verdict.assumed:
        lines += ["", "Assumed:"] + [f"  - {a}" for a in verdict.assumed]
    if verdict.way_out:
        lines += ["", "Way out (works plainly, one change):"]
        for w in verdict.way_out:
            lines += [f"  - {w['change']} {w['to']}:  {w['command']}"]
    lines += ["", f"This answer on the site: {page_link(verdict)}"]
    return "\n".join(lines)


def as_json(verdict: Verdict) -> str:
    extra = {"link": page_link(verdict), "cell_url": urls.absolute(verdict.cell) if verdict.cell else ""}
    return json.dumps({**verdict.as_dict(), **extra}, sort_keys=True)


def as_markdown(verdict: Verdict) -> str:
    lines = [f"**{WORDS[verdict.verdict]}** ({SOURCES[verdict.source]}) for "
             + ", ".join(f"`{k}={v}`" for k, v in verdict.resolved.items()), ""]
    lines += [f"- {fact}" for fact in verdict.facts]
    if verdict.fix:
        lines += ["", f"**Fix:** {verdict.fix}"]
    if verdict.cell:
        lines += ["", f"[The measured cell]({urls.absolute(verdict.cell)})"]
    if verdict.assumed:
        lines += ["", "Assumed: " + "; ".join(verdict.assumed)]
    if verdict.way_out:
        lines += ["", "Nearest setups that work plainly:", ""]
        lines += [f"- {w['change']} {w['to']}: `{w['command']}`" for w in verdict.way_out]
    lines += ["", f"[Check it yourself]({page_link(verdict)})"]
    return "\n".join(lines)

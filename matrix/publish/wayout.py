"""Why a cell fails, in words, and the measured way out: the nearest cells on the same runner that pass.

Pure functions over the aggregate's rows (dicts of `findings.records`), no Jinja, no I/O. `matrix.publish.findings`
calls them once per cell and per error signature; the pages and `data/causes.json` read the result. Every way
out named here is a cell that was measured and passed: nothing is suggested that the records do not show.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from matrix.publish.aggregate import CELL, FAILED, version_key

PASSING = ("works", "works-with-fix")
AXES = (("bnb", "bitsandbytes"), ("transformers", "transformers"), ("torch", "torch"))  # the order tried
INSTALL_WORDS = {"ResolutionImpossible": "cannot be installed together",
                 "NoMatchingDistribution": "a requested release has no installable file for this platform",
                 "InstallError": "the install failed"}
REASON_LIMIT = 240  # characters of the installer's reason quoted in a cause
_NEEDS = re.compile(r"bitsandbytes\s*>=\s*([0-9]+(?:\.[0-9]+){1,3})", re.I)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def major(version: Any) -> str:
    """'5.x' for '5.24.0' (the transformers major a page splits by)."""
    head = _text(version).split(".")[0]
    return f"{head}.x" if head.isdigit() else _text(version) or "?"


def major_number(version: Any) -> str:
    """'5' for '5.24.0'."""
    return major(version).removesuffix(".x")


def torch_label(row: dict[str, Any]) -> str:
    """The torch build as installed ('2.12.1+cu130'), or as requested when nothing was installed."""
    installed = _text(row.get("version_torch"))
    return installed or _text(row.get("torch"))


def cause_row(rows: list[dict[str, Any]], baseline: str) -> dict[str, Any] | None:
    """The failure a cell's verdict rests on: a whole-card failure, the baseline recipe's first."""
    failed = [r for r in rows if r["outcome"] in FAILED and not _text(r.get("budget"))]
    failed.sort(key=lambda r: (r["recipe"] != baseline, r["shape"], r["recipe"]))
    return failed[0] if failed else None


def cause_words(row: dict[str, Any], catalogue: dict[str, Any], quote: bool = True) -> str:
    """The root cause of one failed row in words: the installer's own reason (its 'Because ...' line; the verdict
    already says what kind of install failure; only with `quote`), a version the message asks for, or the
    signature's title. Without `quote`, only our words and versions (for text pasted into issues)."""
    if row.get("stage") == "install":
        words = INSTALL_WORDS.get(_text(row.get("error_type")), INSTALL_WORDS["InstallError"])
        lines = [ln.strip(" ×╰─│") for ln in _text(row.get("error_message")).splitlines() if ln.strip(" ×╰─│")]
        reason = next((ln for ln in lines if "because" in ln.lower()), lines[0] if lines else "")
        if row.get("error_type") == "ResolutionImpossible":
            words = f"torch {row['torch']}, bitsandbytes {row['bnb']} and transformers {row['transformers']} {words}"
        return f"the installer says: {reason[:REASON_LIMIT].rstrip('.')}" if reason and quote else words
    slug = _text(row.get("signature")) or "unclassified"
    if slug == "bnb-too-old":
        needed = _NEEDS.search(_text(row.get("error_message")))
        if needed:
            return f"transformers {major_number(row['transformers'])} needs bitsandbytes >= {needed.group(1)}"
    sig = catalogue.get(slug) or catalogue.get("unclassified")
    return sig.title if sig is not None else "an unrecognised failure"


def _nearest(mine: str, others: Iterable[str], newer_first: bool) -> str | None:
    """The value closest to `mine` in version order; for bitsandbytes the oldest newer one before any older."""
    ordered = sorted(set(others) | {mine}, key=version_key)
    at = ordered.index(mine)
    candidates = [v for v in ordered if v != mine]
    if not candidates:
        return None
    if newer_first:
        newer = [v for v in candidates if ordered.index(v) > at]
        return newer[0] if newer else candidates[-1]
    return min(candidates, key=lambda v: (abs(ordered.index(v) - at), ordered.index(v) < at))


def passing_index(cells: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    """The passing cells by (axis, the other three key values) -> {that axis' value: cell}: `way_out`'s lookup,
    made once (scanning every cell of the runner for every cell and axis was quadratic)."""
    index: dict[tuple, dict[str, dict[str, Any]]] = {}
    for other in cells:
        if other["verdict"] in PASSING:
            for axis, _ in AXES:
                index.setdefault((axis, *(other[k] for k in CELL if k != axis)), {})[other[axis]] = other
    return index


def way_out(cell: dict[str, Any], cells: dict[tuple, dict[str, Any]],
            index: dict[tuple, dict[str, dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Per axis (bitsandbytes, transformers, torch), the nearest cell on the same runner that differs in that
    axis alone and passes, as {axis, label, change, cell_path, verdict, fixes}: the nearest that works plainly,
    and only where none does, the nearest that works with a fix (a plain pass is the better advice); the axes
    whose way out works plainly come first. `index`: `passing_index` of `cells` (made here when not given)."""
    index = passing_index(cells.values()) if index is None else index
    out = []
    for axis, label in AXES:
        near = {value: other for value, other in
                index.get((axis, *(cell[k] for k in CELL if k != axis)), {}).items() if value != cell[axis]}
        plain = {value: other for value, other in near.items() if other["verdict"] == "works"}
        passing = plain or near
        best = _nearest(cell[axis], passing, newer_first=axis == "bnb") if passing else None
        if best is not None:
            other = passing[best]
            out.append({"axis": axis, "label": label, "value": best, "change": f"{label} {best}",
                        "cell_path": other["cell_path"], "verdict": other["verdict"], "fixes": other["fixes"]})
    return sorted(out, key=lambda o: o["verdict"] != "works")  # plain passes first, each in AXES' order


def passing_recipes(rows: list[dict[str, Any]], baseline: str) -> list[str]:
    """Recipes other than the baseline that passed somewhere on the whole card in this cell."""
    return sorted({r["recipe"] for r in rows if r["outcome"] == "pass" and not _text(r.get("budget"))} - {baseline})


def cell_causes(verdicts: list[dict[str, Any]], latest: dict[tuple, list[dict[str, Any]]], baseline: str,
                catalogue: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per cell page path of every cell that does not simply work: its cause (slug, words, the row's recipe,
    shape, stage) and its way out (nearest passing cells, recipes that passed here)."""
    by_runner: dict[str, dict[tuple, dict[str, Any]]] = {}
    for cell in verdicts:
        by_runner.setdefault(cell["runner"], {})[tuple(cell[k] for k in CELL)] = cell
    index = passing_index(verdicts)  # keys include the runner: one index serves every runner
    out = {}
    for cell in verdicts:
        if cell["verdict"] in ("works", "not-measured"):
            continue
        rows = latest.get(tuple(cell[k] for k in CELL), [])
        row = cause_row(rows, baseline)
        if row is None:
            continue
        slug = "" if row.get("stage") == "install" else (_text(row.get("signature")) or "unclassified")
        out[cell["cell_path"]] = {
            "slug": slug, "words": cause_words(row, catalogue),
            "own_words": cause_words(row, catalogue, quote=False), "recipe": row["recipe"], "shape": row["shape"],
            "stage": _text(row.get("stage")), "torch_label": torch_label(row),
            "way_out": way_out(cell, by_runner[cell["runner"]], index), "recipes": passing_recipes(rows, baseline)}
    return out


def fix_words(fixes: Any) -> str:
    """'works with a fix: seed-fix, nf4-bf16': what a works-with-fix cell needs, in the verdict's own words."""
    names = ", ".join(_text(fixes).split())
    return f"works with a fix: {names}" if names else "works with a fix"


def change_words(out: dict[str, Any]) -> str:
    """One way out in words: 'bitsandbytes 0.46.1 works', or '... works with a fix: seed-fix' where it needs one."""
    return f"{out['change']} {'works' if out['verdict'] == 'works' else fix_words(out['fixes'])}"


def summary(cell: dict[str, Any], why: dict[str, Any] | None, own: bool = False) -> str:
    """One line for a grid square's tooltip: the verdict's cause and the first measured way out, saying "works
    with a fix" wherever the passing cell needs one; `own`: in our words only, never the installer's (for the
    Markdown snippet, which lands in issues)."""
    if not why:
        return ""
    text = why.get("own_words", why["words"]) if own else why["words"]
    if cell["verdict"] == "works-with-fix":  # the verdict beside it already says "works with a fix"
        return f"{text}; passes with {', '.join(_text(cell['fixes']).split())}"
    if why["way_out"]:
        text += f"; {change_words(why['way_out'][0])}"
    elif why["recipes"]:
        text += f"; {', '.join(why['recipes'])} passed on some shapes"
    return text


def error_way_outs(hit_cells: list[dict[str, Any]], causes: dict[str, dict[str, Any]],
                   cells: dict[tuple, dict[str, Any]]) -> list[dict[str, Any]]:
    """For an error signature: which one change made the cells where it occurred pass, grouped by the change.

    A bitsandbytes change reads 'bitsandbytes >= X' when every measured newer release with the same runner,
    torch and transformers passes too (works plainly, when X does), else 'bitsandbytes X'; a change whose cell
    needs a fix says so ('..., works with a fix: seed-fix'). Each group lists its items: where it failed (runner,
    torch build, transformers), the failing cell's path and the passing cell's path."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    alike: dict[tuple, list[dict[str, Any]]] = {}  # cells by runner, torch and transformers, made once
    for c in cells.values():
        alike.setdefault((c["runner"], c["torch"], c["transformers"]), []).append(c)
    for cell in hit_cells:
        why = causes.get(cell["cell_path"])
        if not why:
            continue
        for out in why["way_out"]:
            change = out["change"]
            if out["axis"] == "bnb":
                least = version_key(out["value"])
                newer = [c for c in alike.get((cell["runner"], cell["torch"], cell["transformers"]), [])
                         if version_key(c["bnb"]) >= least]
                enough = ("works",) if out["verdict"] == "works" else PASSING
                if all(c["verdict"] in enough for c in newer):
                    change = f"bitsandbytes >= {out['value']}"
            if out["verdict"] != "works":  # a pass that needs a fix is not a plain pass: say so
                change += f", {fix_words(out['fixes'])}"
            where = f"{cell['runner']}, torch {why['torch_label']}, transformers {cell['transformers']}"
            if out["axis"] != "bnb":
                where += f", bitsandbytes {cell['bnb']}"
            group = groups.setdefault((out["axis"], change), {"axis": out["axis"], "change": change, "items": []})
            if all(item["where"] != where for item in group["items"]):
                group["items"].append({"where": where, "failed": cell["cell_path"], "passed": out["cell_path"]})
    order = {axis: i for i, (axis, _) in enumerate(AXES)}
    return sorted(groups.values(), key=lambda g: (order[g["axis"]], -len(g["items"]), g["change"]))

"""The cell pages, written straight into the built site: one compiled template, Material's frame (`direct.Shell`),
work split over the CPUs, and only the cells whose inputs changed.

Per cell: index.html, history.js (every run of the cell as compact rows, newest first: the history is data, not a
repeated table), badge.svg, badge.json and the charts that have something to show. Plus cells/index.js, the compact
index the All cells page searches (versions, runner, hardware, verdict, fixes, error signatures).

Incremental: each cell gets a key, a hash of everything its files are made from (its records' columns, verdict,
cause, prediction, runner, the frame and the code). `.bnb-matrix-cells.json` in the built site keeps the keys; a
rebuild hard-links the files of every cell whose key is unchanged from the previous site and renders only the rest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matrix import urls
from markupsafe import Markup, escape

from matrix.publish import badge, charts, direct, incremental, pages, render
from matrix.publish.aggregate import CELL, FAILED
from matrix.publish.render import VERDICT_LABELS  # noqa: F401 - also render.VERDICT_LABELS

MANIFEST = ".bnb-matrix/cells.json"
CELL_FILES = ("index.html", "history.js", "badge.svg", "badge.json", *pages.CELL_CHARTS)
HISTORY = ["timestamp", "run_id", "recipe", "shape", "budget", "outcome"]  # history.js columns
# the Results table's, the failures' and the charts' (charts.CELL_COLUMNS) columns
ROW_COLUMNS = ["recipe", "shape", "budget", "budget_gib", "outcome", "flaky", "time_load_s", "time_forward_s",
               "mem_gpu_load_peak_mib", "mem_gpu_forward_peak_mib", "mem_cpu_peak_rss_mib", "mem_footprint_mib",
               "check_rel_error", "check_placement", "signature", "skip_reason", "warnings", "last_seen", "stage",
               "error_type", "error_message", "stderr_tail", "runner", "runner_compute_capability"]
_CODE = [Path(__file__), Path(direct.__file__), Path(pages.__file__), Path(charts.__file__),
         Path(__file__).with_name("render.py")]
_WORK: dict[str, Any] = {}  # what forked workers read (inherited, not pickled)


def _hash_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Per cell, a 64-bit sum of the row hashes of `columns` (pandas' hash_pandas_object, column-wise)."""
    if frame.empty:
        return pd.Series(dtype="uint64")
    cols = [c for c in columns if c in frame]
    # as text: a column's dtype can change when a file adds rows (float NaN in one file, None in another)
    hashed = pd.util.hash_pandas_object(frame[cols].astype(str), index=False).to_numpy(dtype="uint64")
    codes = frame.groupby(CELL, sort=False).ngroup().to_numpy()
    acc = np.zeros(codes.max() + 1, dtype="uint64")
    np.add.at(acc, codes, hashed)
    keys = frame[CELL].drop_duplicates()
    return pd.Series(acc, index=pd.MultiIndex.from_frame(keys))


def _escape_row(values: Iterable[Any]) -> str:
    return json.dumps(["" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in values],
                      ensure_ascii=True).replace("</", "<\\/")


class Cells:
    """Contexts of the cell pages of one site (`render.Site`), built column-wise, for the cells asked for."""

    def __init__(self, site: Any, shell: direct.Shell) -> None:
        self.site, self.data, self.shell = site, site.data, shell
        self._commands: dict[tuple[str, str, str, str], str] = {}
        agg = self.data.agg
        self.cells = {c["cell_path"]: c for c in agg.verdicts.to_dict(orient="records")}
        frame = agg.frame
        self.versions = sorted(c for c in frame.columns if c.startswith("version_"))
        ordered = frame.sort_values(CELL + ["time", "run_id", "recipe", "shape", "budget"],
                                    ascending=[True] * len(CELL) + [False, False, True, True, True], kind="mergesort")
        cc = ["runner_compute_capability"] if "runner_compute_capability" in frame else []
        self.history = ordered[CELL + ["cell_path"] + HISTORY + self.versions + cc]
        newest = self.history.drop_duplicates("cell_path")  # each cell's newest record
        self.cc = dict(zip(newest["cell_path"], newest[cc[0]])) if cc else {}
        self.versions_of = {path: {c.removeprefix("version_"): v for c, v in zip(self.versions, values)
                                   if isinstance(v, str) and v}
                            for path, values in zip(newest["cell_path"],
                                                    newest[self.versions].itertuples(index=False, name=None))}
        code = hashlib.sha256(b"".join(p.read_bytes() for p in _CODE)
                              + (site.site_dir / "templates" / "cell.html.j2").read_bytes()
                              + shell.head.encode() + shell.tail.encode()).hexdigest()
        row_hash = _hash_rows(frame, list(dict.fromkeys(
            CELL + ROW_COLUMNS + HISTORY + self.versions + ["cell_path", "date", "error_message", "stderr_tail"])))
        self.keys: dict[str, str] = {}
        for path, cell in self.cells.items():
            rows = int(row_hash.get(tuple(cell[k] for k in CELL), 0))
            extra = json.dumps([cell, self.data.found.causes.get(path), self._prediction(cell),
                                self.data.found.runners[cell["runner"]]["label"]], sort_keys=True, default=str)
            self.keys[path] = hashlib.sha256(f"{code}/{rows}/{extra}".encode()).hexdigest()[:24]

    @functools.cached_property
    def _predictions(self) -> dict[tuple, dict[str, Any]]:
        preds = self.data.gpu["preds"]
        if preds.empty:
            return {}
        return {(r["gpu_arch"], r["torch"], r["bnb"]): r
                for r in preds.drop_duplicates(["gpu_arch", "torch", "bnb"]).to_dict(orient="records")}

    def _prediction(self, cell: dict[str, Any]) -> dict[str, Any] | None:
        cc = self.cc.get(cell["cell_path"])
        if not isinstance(cc, str) or not cc:
            return None
        return self._predictions.get(("sm_" + cc.replace(".", ""), cell["torch"], cell["bnb"]))

    def contexts(self, paths: list[str]) -> dict[str, dict[str, Any]]:
        """The template context, history rows and chart rows of each cell in `paths`."""
        wanted = set(paths)
        latest = self.data.agg.latest
        latest = latest[latest["cell_path"].isin(wanted)]
        row_cols = [c for c in ROW_COLUMNS if c in latest]
        rows_of: dict[str, list[dict[str, Any]]] = {}
        for path, row in zip(latest["cell_path"], latest[row_cols].to_dict(orient="records")):
            rows_of.setdefault(path, []).append(row)
        history = self.history[self.history["cell_path"].isin(wanted)]
        hist_of: dict[str, list[str]] = {}
        for path, values in zip(history["cell_path"], history[HISTORY].itertuples(index=False, name=None)):
            hist_of.setdefault(path, []).append(_escape_row(values))
        out = {}
        for path in paths:
            cell, rows = self.cells[path], rows_of.get(path, [])
            why = self.data.found.causes.get(path)
            failures = [dict(r, title=f"{r['recipe']} · {r['shape']} · "
                                      f"{r['budget'] + ' GiB' if r['budget'] else 'whole card'}")
                        for r in rows if r["outcome"] in FAILED]
            for f in failures:
                f["anchor"] = direct.heading_id(f["title"])
            title = (f"torch {cell['torch']} · bnb {cell['bnb']} · transformers {cell['transformers']} "
                     f"on {cell['runner']}")
            out[path] = {
                "here": path, "title": title, "title_id": direct.heading_id(title), "cell": cell,
                "rows": [dict(r, peak=pages.peak_memory(r)) for r in rows], "failures": failures,
                "versions": self.versions_of.get(path, {}), "runner": self.data.found.runners[cell["runner"]],
                "why": why, "prediction": self._prediction(cell), "without_gpu": self._without_gpu(cell),
                "command": self._command(cell["runner_kind"], cell["torch"], cell["bnb"], cell["transformers"]),
                "snippet": pages.markdown_snippet(cell, why), "cell_url": urls.absolute(path),
                "history_rows": len(hist_of.get(path, [])), "_history": hist_of.get(path, [])}
        return out

    def _command(self, kind: str, torch: str, bnb: str, transformers: str) -> str:
        key = (kind, torch, bnb, transformers)  # the profile must hold the cell's transformers too (reproduce.py)
        if key not in self._commands:
            self._commands[key] = pages.reproduce_command(kind, torch, bnb, self.data.axes, transformers)
        return self._commands[key]

    def _without_gpu(self, cell: dict[str, Any]) -> bool:
        """A CPU runner measuring a CUDA build of torch: the page says so and links the GPU prediction."""
        if cell["runner_kind"] != "cpu":
            return False
        build = self.data.axes.torch_builds.get(cell["torch"])
        variant = build.variant if build is not None else cell["torch"].partition("+")[2]
        return str(variant).startswith("cu")

    def toc(self, context: dict[str, Any]) -> list[tuple[str, str]]:
        items = [("reproduce", "Reproduce"), ("results", "Results")]
        items += [("charts", "Charts")] if context["charts"] else []
        items += [("failures", "Failures")] if context["failures"] else []
        return items + [("history", "History"), ("link-it-from-an-issue", "Link it from an issue")]


class Helpers:
    """What the cell template calls per link, verdict, outcome and heading, as Python (a Jinja macro call costs
    tens of microseconds, and a cell page makes hundreds). Output is escaped markup."""

    def __init__(self, env_globals: dict[str, Any]) -> None:
        self.g = env_globals
        self.here = ""

    def names(self, here: str) -> dict[str, Any]:
        self.here = here
        return {name: getattr(self, name) for name in ("url", "a", "verdict", "outcome", "budget", "recipe_link",
                                                        "fixes", "error_link", "h")}

    def url(self, target: str) -> str:
        if self.here.count("/") == _DEPTH and not render.is_cell_page(target):  # every cell page: cells/r/t/b/tf/
            return "../" * _DEPTH + (target + "index.html" if target.endswith("/") or not target else target)
        return render.rel_url(self.here, target)

    def a(self, target: str, text: Any, cls: str = "") -> Markup:
        attr = f' class="{escape(cls)}"' if cls else ""
        return Markup(f'<a{attr} href="{escape(self.url(target))}">{escape(text)}</a>')

    def verdict(self, v: str) -> Markup:
        return Markup(f'<span class="verdict verdict-{escape(v)}">{escape(VERDICT_LABELS[v])}</span>')

    def outcome(self, o: str, flaky: Any = False) -> Markup:
        out = f'<span class="outcome outcome-{escape(o)}">{escape(o)}</span>'
        return Markup(out + (' <span class="flaky" title="outcomes differ across runs">flaky</span>' if flaky is True
                             else ""))

    def budget(self, b: str) -> Markup:
        if b:
            return Markup(f'<span data-sort="{escape(b)}">{escape(b)} GiB</span>')
        return Markup('<span data-sort="1000000">whole card</span>')

    def recipe_link(self, name: str) -> Markup:
        return self.a(urls.fix_path(name), name) if self.g["has_fix_page"](name) else escape(name)

    def fixes(self, names: str) -> Markup:
        return Markup(", ").join(self.recipe_link(f) for f in names.split())

    def error_link(self, slug: str, short: bool = False) -> Markup:
        known = self.g["known_error"](slug)
        if short:
            return self.a(urls.error_path(known), known, "nowrap")
        sigs = self.g["signatures"]
        return self.a(urls.error_path(known), sigs[known].title if known in sigs else "an unrecognised failure")

    def h(self, level: int, text: str, anchor: str) -> Markup:
        return Markup(f'<h{level} id="{escape(anchor)}">{escape(text)}<a class="headerlink" href="#{escape(anchor)}" '
                      f'title="Permanent link">&para;</a></h{level}>')


_DEPTH = 5


@functools.lru_cache(maxsize=16)
def _badges(verdict: str) -> dict[str, bytes]:
    return badge.files(verdict)


def _render_one(path: str, context: dict[str, Any], out: Path) -> None:
    """Write one cell's files under `out`."""
    cells: Cells = _WORK["cells"]
    folder = out / path
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(_badges(context["cell"]["verdict"]))
    context["charts"] = []
    for (name, alt), draw in zip(pages.CELL_CHARTS.items(), pages._CELL_DRAWS):
        svg = draw(context["rows"]) if context["rows"] else None
        if svg:
            files[name] = svg
            context["charts"].append({"file": name, "alt": alt})
    history = context.pop("_history")
    files["history.js"] = ("window.bnbMatrixHistory = [\n" + ",\n".join(history) + "\n];\n").encode()
    body = _WORK["template"].render(**context, **_WORK["helpers"].names(path))
    files["index.html"] = cells.shell.page(path, context["title"], cells.toc(context), body)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _render_chunk(paths: list[str]) -> int:
    cells: Cells = _WORK["cells"]
    for start in range(0, len(paths), 200):
        part = paths[start:start + 200]
        for path, context in cells.contexts(part).items():
            _render_one(path, context, _WORK["out"])
    return len(paths)


def _workers(jobs: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods() or \
            threading.active_count() > 1:  # fork only from a single-threaded process (a held lock stays held)
        return 1
    return max(1, min(cpus, jobs // 100))


def write_cells(site: Any, out: Path, previous: Path | None, shell_html: str) -> dict[str, int]:
    """Write every cell page (and cells/index.js) into the built site `out`, in the frame of the built stand-in
    page `shell_html`, reusing the unchanged cells of the `previous` site (hard links; copies where links fail).
    Returns counts: cells, rendered, reused."""
    shell = direct.Shell.read(shell_html)
    cells = Cells(site, shell)
    old: dict[str, str] = {}
    if previous is not None and (previous / MANIFEST).is_file():
        try:
            old = json.loads((previous / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
    todo, reused = [], 0
    for path, key in cells.keys.items():
        if previous is not None and old.get(path) == key and _link_cell(previous / path, out / path):
            reused += 1
        else:
            todo.append(path)
    env = site.env
    _WORK.update(cells=cells, out=out, template=env.get_template("cell.html.j2"), helpers=Helpers(env.globals))
    try:
        workers = _workers(len(todo))
        if workers > 1:
            chunks = [todo[i::workers * 4] for i in range(workers * 4)]
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=incremental.worker_signals)
            try:
                pool.map(_render_chunk, chunks)
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
        elif todo:
            _render_chunk(todo)
    finally:
        _WORK.clear()
    (out / "cells" / "index.js").write_bytes(cells_index(site.data.agg, site.data.found))
    (out / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(cells.keys, sort_keys=True, indent=0) + "\n", encoding="utf-8")
    direct.remove_shell(out)
    direct.add_to_sitemap(out, urls.site_url(), sorted(cells.keys))
    return {"cells": len(cells.keys), "rendered": len(todo), "reused": reused}


def _link_cell(old: Path, new: Path) -> bool:
    """Hard-link an unchanged cell's files from the previous site; False (render it) if any is missing."""
    try:
        names = [p.name for p in old.iterdir() if p.is_file()]
    except OSError:
        return False
    if "index.html" not in names:
        return False
    new.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            os.link(old / name, new / name)
        except OSError:
            try:
                (new / name).write_bytes((old / name).read_bytes())
            except OSError:
                return False
    return True


def cells_index(agg: Any, found: Any) -> bytes:
    """cells/index.js: every cell as [path, runner, runner page, hardware, torch, bnb, transformers, verdict, fixes,
    error signatures, last measured]: the All cells page's rows, and the words its search box matches against."""
    v = agg.verdicts
    sigs: dict[str, set[str]] = {}
    latest = agg.latest
    failed = latest[latest["signature"].astype(str) != ""]
    for path, sig in zip(failed["cell_path"], failed["signature"]):
        sigs.setdefault(path, set()).add(str(sig))
    rows = [[p.removeprefix("cells/"), r, urls.runner_path(r), str(g or c or ""), t, b, tf, verdict, fixes,
             " ".join(sorted(sigs.get(p, ()))), last]
            for p, r, g, c, t, b, tf, verdict, fixes, last in zip(
                v["cell_path"], v["runner"], v["runner_gpu_name"].where(v["runner_gpu_name"].astype(bool), None),
                v["runner_cpu_model"], v["torch"], v["bnb"], v["transformers"], v["verdict"], v["fixes"],
                v["last_measured"])]
    text = json.dumps({"columns": ["path", "runner", "runner_path", "hardware", "torch", "bnb", "transformers",
                                   "verdict", "fixes", "signatures", "last_measured"], "rows": rows,
                       "labels": VERDICT_LABELS},
                      ensure_ascii=True, separators=(",", ":"), default=str).replace("</", "<\\/")
    return ("window.bnbMatrixCells = " + text + ";\n").encode()

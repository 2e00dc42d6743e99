"""Benchmark bnb-matrix on this machine, in one run: cell setup (pip vs uv, cold vs warm), the probe against a
bare import, the whole default matrix (cold, then warm with nothing new) and the site build on synthetic records.

    .venv/bin/python scripts/benchmark.py --quick     # ~3 min: one bnb, warm matrix only, site on 100 / 1,000
    .venv/bin/python scripts/benchmark.py --baseline 5505e02   # ~10 min: adds bnb 0.47.0, the cold matrix,
                                                      # 10,000 records, and that many built with the old site code

Writes the raw figures as JSON (--out, default benchmark.json in a temp dir) and prints a Markdown table. Never
adds to results/ or .nox/ (it runs the existing .nox venvs); cold measurements use temp venvs, caches and
results dirs. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matrix.measure import install, jobs as measure  # noqa: E402
from matrix.measure.records import base as record_base  # noqa: E402
from matrix.measure.axes import load_axes, pick_profile  # noqa: E402

BIN = Path(sys.executable).parent
TORCH = "2.13.0+cpu"


def timed(cmd: list[str], env: dict | None = None, cwd: Path = ROOT, check: bool = True) -> float:
    """Seconds one command takes; its output is discarded unless it fails."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, errors="replace", check=False)
    seconds = time.monotonic() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-3000:]}")
    return seconds


def env_with(**extra: str) -> dict:
    return {**install.cell_env(), **extra}


# ---------------------------------------------------------------------------------------------- cell setup
def setup_cell(installer: str, bnb: str, transformers: str, work: Path) -> dict:
    """venv + install of one cell with `installer`, cold (empty cache, new venv), then warm (same venv again).

    The venv is made the way nox's backend makes it (uv: `uv venv`, pip: virtualenv); the install commands are
    exactly those of matrix/measure.py. Cold still takes torch from the local wheelhouse (/opt/wheels)."""
    axes = load_axes()
    cache, venv = work / f"{installer}-cache", work / f"{installer}-venv"
    env = env_with(UV_CACHE_DIR=str(cache), PIP_CACHE_DIR=str(cache))
    python = venv / "bin" / "python"
    constraints = work / "constraints.txt"
    constraints.write_text(f"torch=={TORCH}\n")
    commands = install.install_commands(python, axes.torch_builds[TORCH], bnb, transformers, "online", installer,
                                        constraints)
    if installer == "uv":
        make_venv = [install.uv_binary(), "venv", "--python", sys.executable, str(venv)]
    else:
        make_venv = [str(BIN / "virtualenv"), "--python", sys.executable, str(venv)]
    out: dict[str, Any] = {"venv_cold": timed(make_venv, env)}
    out["install_cold"] = sum(timed(cmd, env) for cmd in commands)
    out["cold"] = out["venv_cold"] + out["install_cold"]
    warm = [sum(timed(cmd, env) for cmd in commands) for _ in range(3)]  # reused venv: nothing to do
    out["warm_runs"] = warm
    out["warm"] = statistics.median(warm)
    return out


# ---------------------------------------------------------------------------------------------- the probe
def bare_import(python: Path, repeats: int = 3) -> dict:
    """The floor: `import torch, transformers, bitsandbytes` in a fresh interpreter of the cell's venv; best of
    `repeats` (others share this machine: the minimum is the least disturbed figure)."""
    runs = [timed([str(python), "-c", "import torch, transformers, bitsandbytes"], env_with()) for _ in range(repeats)]
    return {"runs": runs, "best": min(runs)}


# What-if for the probe (matrix/measure/probe.py is not changed here): the parent also imports what the first
# from_pretrained pulls in lazily (torch._dynamo, sympy, the bnb quantizer, the Llama model), before forking,
# so the forked recipes no longer each pay it. Runs probe.py's own main() after those imports.
PREIMPORT_WRAPPER = """import sys, time
t = time.monotonic()
import torch, transformers, accelerate, bitsandbytes, torch._dynamo
import transformers.models.llama.modeling_llama, transformers.quantizers.auto, transformers.generation
import transformers.integrations.bitsandbytes, transformers.quantizers.quantizer_bnb_4bit
sys.stderr.write(f"preimport {{time.monotonic() - t:.2f}} s\\n")
from matrix.measure import probe
sys.exit(probe.main())
"""


def probe_cell(bnb: str, work: Path, preimport: bool = False, repeats: int = 2) -> dict:
    """One cell of the default profile probed in its existing venv (.nox/...), records to a temp file, best of
    `repeats`: the probe's wall time and its own split (parent imports, per-recipe load / forward / process),
    against the bare-import floor. `preimport`: the what-if above, same cell, same venv."""
    axes = load_axes()
    profile = pick_profile(axes, "cpu")
    python = ROOT / ".nox" / f"probe-torch-2-13-0-cpu-bnb-{bnb.replace('.', '-')}" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `nox -s probe` once first")
    transformers = profile.transformers[0]
    runner = measure.runner_facts()["slug"]
    jobs = measure.plan_jobs(axes, profile, runner, TORCH, bnb, transformers, profile.install)
    real_probe = measure.PROBE_COMMAND
    if preimport:
        wrapper = work / "probe_preimport.py"
        wrapper.write_text(PREIMPORT_WRAPPER)
        measure.PROBE_COMMAND = (str(wrapper),)
    runs = []
    try:
        for i in range(repeats):
            start = time.monotonic()
            records = measure.run_probe(python, axes, profile, profile.shapes[0], jobs, record_base("benchmark"),
                                        work / f"probe-{bnb}-{preimport}-{i}.jsonl")
            runs.append((time.monotonic() - start, records))
    finally:
        measure.PROBE_COMMAND = real_probe
    wall, records = min(runs, key=lambda run: run[0])
    floor = bare_import(python)
    ran = [r for r in records if r["outcome"] != "skip"]
    return {"bnb": bnb, "preimport": preimport, "wall": wall, "wall_runs": [w for w, _ in runs],
            "bare_import": floor["best"], "bare_import_runs": floor["runs"], "ratio": wall / floor["best"],
            "recipes_run": len(ran), "recipes": len(records), "imports": records[0]["timings_s"].get("imports"),
            "outcomes": {r["recipe"]: r["outcome"] for r in records},
            "load": [r["timings_s"].get("load") for r in ran], "forward": [r["timings_s"].get("forward") for r in ran],
            "process": [r["timings_s"].get("process") for r in ran]}


# ---------------------------------------------------------------------------------------------- the matrix
def nox_probe(results: Path, envdir: Path | None, extra_env: dict) -> float:
    """`nox -s probe` (every pair of the cpu profile) into `results`; nox's uv backend, venvs reused."""
    cmd = [str(BIN / "nox"), "-s", "probe"] + (["--envdir", str(envdir)] if envdir else [])
    env = env_with(BNB_MATRIX_PROFILE="cpu", BNB_MATRIX_RESULTS=str(results), PATH=f"{BIN}:{os.environ['PATH']}",
                   **extra_env)
    env.pop("BNB_MATRIX_RUN_ID", None)
    return timed(cmd, env)


def count_records(results: Path) -> int:
    return sum(1 for path in results.glob("*.jsonl") for line in path.open() if line.strip())


def matrix_warm_existing(work: Path) -> dict:
    """Warm re-run with nothing new: the existing .nox venvs against a temp copy of results/ (every cell there)."""
    results = work / "results-copy"
    shutil.copytree(ROOT / "results", results)
    before = count_records(results)
    seconds = nox_probe(results, None, {})
    return {"warm": seconds, "new_records": count_records(results) - before}


def matrix_cold_then_warm(work: Path) -> dict:
    """The whole default CPU matrix from nothing (new venvs, empty uv cache, no checkpoint, empty results), then
    again with nothing new (same venvs and results: every job skipped by fingerprint)."""
    results, envdir = work / "matrix-results", work / "matrix-nox"
    extra = {"UV_CACHE_DIR": str(work / "matrix-uv-cache"), "BNB_MATRIX_CACHE": str(work / "matrix-ckpt")}
    results.mkdir()
    cold = nox_probe(results, envdir, extra)
    made = count_records(results)
    warm = nox_probe(results, envdir, extra)
    return {"cold": cold, "records": made, "warm": warm, "new_records_warm": count_records(results) - made}


# ---------------------------------------------------------------------------------------------- the site
def real_records() -> list[dict]:
    return [json.loads(line) for path in sorted((ROOT / "results").glob("*.jsonl"))
            for line in path.open() if line.strip()]


_SYNTHETIC: dict[tuple[int, int, int], list[dict]] = {}


def synthetic_records(n: int, per_cell: int = 16, seed: int = 0) -> list[dict]:
    """`_synthetic_records`, made once per process (they are large)."""
    if (n, per_cell, seed) not in _SYNTHETIC:
        _SYNTHETIC.clear()
        _SYNTHETIC[(n, per_cell, seed)] = _synthetic_records(n, per_cell, seed)
    return _SYNTHETIC[(n, per_cell, seed)]


def _synthetic_records(n: int, per_cell: int = 16, seed: int = 0) -> list[dict]:
    """`n` records varied from the real ones in results/: each real cell (its recipes' records) is a template;
    synthetic cells get new runner slugs (8 per real runner) and bnb versions (.postN), and each is measured as
    many times as fit in about `per_cell` records, at least once (new run ids and timestamps, a month apart).
    Timings and memory get +-20 % jitter so no two cells draw the same chart. About n / per_cell cells, so the
    page count does not depend on how many records the real cells happen to have."""
    rng = random.Random(seed)
    templates: dict[tuple, list[dict]] = {}
    for rec in real_records():
        key = (rec["runner"]["slug"], rec["requested"]["torch"], rec["requested"]["bnb"],
               rec["requested"]["transformers"])
        templates.setdefault(key, []).append(rec)
    cells = list(templates.values())
    out: list[dict] = []
    c = 0
    while len(out) < n:
        template = cells[c % len(cells)]
        variant, generation = (c // len(cells)) % 8, c // (len(cells) * 8)
        for run in range(max(1, round(per_cell / len(template)))):
            for base in template:
                if len(out) == n:
                    return out
                rec = copy.deepcopy(base)
                rec["runner"]["slug"] = f"{base['runner']['slug']}-v{variant}"
                rec["requested"]["bnb"] = base["requested"]["bnb"] + (f".post{generation}" if generation else "")
                rec["run_id"] = f"2026{1 + run % 9:02d}01T000000Z-{rec['runner']['slug']}-{c:04x}{run:02x}"
                rec["timestamp"] = f"2026-{1 + run % 9:02d}-{1 + c % 28:02d}T{run % 24:02d}:00:00Z"
                rec["fingerprint"] = hashlib.sha256(f"{c}/{run}/{base['fingerprint']}".encode()).hexdigest()[:20]
                for group in ("timings_s", "memory_mib"):
                    if group not in rec:  # schema-1 install failures have neither
                        continue
                    rec[group] = {k: round(v * rng.uniform(0.8, 1.2), 3) if isinstance(v, (int, float)) else v
                                  for k, v in rec[group].items()}
                out.append(rec)
        c += 1
    return out


def write_results(records: list[dict], results: Path) -> int:
    """Records into one file per runner and month, as scheduled runs leave them (results/<time>-<runner>.jsonl);
    returns the number of files."""
    files: dict[str, list[dict]] = {}
    for rec in records:
        files.setdefault(f"{rec['timestamp'][:7].replace('-', '')}-{rec['runner']['slug']}", []).append(rec)
    results.mkdir(parents=True, exist_ok=True)
    for name, recs in files.items():
        with open(results / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(rec, sort_keys=True) + "\n" for rec in recs)
    return len(files)


def new_run(records: list[dict], size: int = 50) -> list[dict]:
    """One new scheduled run: the newest `size` records of one runner measured again a month later."""
    runner = records[-1]["runner"]["slug"]
    mine = [r for r in records if r["runner"]["slug"] == runner][-size:]
    out = []
    for i, base in enumerate(mine):
        rec = copy.deepcopy(base)
        rec["run_id"] = f"20261201T000000Z-{runner}-new"
        rec["timestamp"] = "2026-12-01T00:00:00Z"
        rec["fingerprint"] = hashlib.sha256(f"new/{i}/{base['fingerprint']}".encode()).hexdigest()[:20]
        out.append(rec)
    return out


# The site build as `python -m matrix site` runs it (sitebuild.build_site), timed by its own report.
SITE_NOW = """
import json, sys, time
from pathlib import Path
from matrix.publish import charts, sitebuild
results, work, out, cache = map(Path, sys.argv[1:5])
charts.CACHE_DIR = cache / "charts"
s = time.monotonic()
report = sitebuild.build_site(results, out, work_dir=work, quiet=True)
t = dict(report.timings, total_inner=time.monotonic() - s, records=report.records, cells=report.cells,
         cells_rendered=report.cells_rendered, cells_reused=report.cells_reused,
         mkdocs_skipped=report.mkdocs_skipped, details=report.details)
print(json.dumps(t, default=str))
"""

# The site build of a tree from before this change: aggregate.load + render.render_site + mkdocs, each timed.
SITE_BEFORE = """
import json, sys, time
from pathlib import Path
from matrix.publish import aggregate, render, sitebuild
from matrix.measure.axes import load_axes
from matrix.publish import charts
results, work, out, cache = map(Path, sys.argv[1:5])
charts.CACHE_DIR = cache / "charts"
t = {}
s = time.monotonic(); axes = load_axes(); agg = aggregate.load(results, recipes=axes.recipes, warn=False)
t["aggregate"] = time.monotonic() - s
s = time.monotonic(); written = render.render_site(agg, work / "docs", axes=axes); t["render"] = time.monotonic() - s
s = time.monotonic(); sitebuild.run_mkdocs(sitebuild.write_config(work, work / "docs"), out)
t["mkdocs"] = time.monotonic() - s
t.update(records=len(agg.frame), cells=len(agg.verdicts))
print(json.dumps(t))
"""


def old_tree(rev: str, work: Path) -> Path:
    """The whole site-build code (matrix/, site/, mkdocs.yml) as it was at git revision `rev` (`git archive`; the
    repository is not touched), plus results/binaries, which the GPU pages read: a before/after on the same
    records in the same run."""
    tree = work / f"tree-{rev}"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "matrix", "site", "mkdocs.yml", "results/binaries"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def _site_size(out: Path) -> dict:
    files = [p for p in out.rglob("*") if p.is_file()]
    search = [out / "search" / "search_index.json", out / "search" / "search_index.js", out / "cells" / "index.js"]
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size / 2**20 for p in search if p.is_file()}
    return {"site_mib": sum(p.stat().st_size for p in files) / 2**20, "site_files": len(files),
            "search_files_mib": sizes, "search_index_mib": max(sizes.values(), default=0.0)}


def site_build(n: int, work: Path, tree: Path = ROOT, step: str = "cold") -> dict:
    """One site build of n synthetic records in a fresh interpreter, wall and CPU seconds (the interpreter and
    everything it waited for: mkdocs, worker processes), the size of the built site and of its search files.
    `step`: "cold" (empty caches, no previous site), "nothing-new" (the same again, the previous site and caches
    kept) or "new-run" (one new run of 50 records added to the results first). `tree`: the checkout whose code
    builds it (an old_tree() for a before/after on the same records)."""
    tag = f"{n}-{tree.name}"
    results, site_work, out, cache = (work / f"site-{n}-results", work / f"site-{tag}-work",
                                      work / f"site-{tag}-public", work / f"site-{tag}-cache")
    if not results.is_dir():
        write_results(synthetic_records(n), results)
    if step == "cold":
        for path in (site_work, out, cache):
            shutil.rmtree(path, ignore_errors=True)
    if step == "new-run":
        added = results / "20261201-new-run.jsonl"
        added.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in new_run(synthetic_records(n))))
    script = SITE_NOW if tree == ROOT else SITE_BEFORE
    env = {**os.environ, "PYTHONPATH": str(tree), "BNB_MATRIX_SITE_CACHE": str(cache)}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, *map(str, (results, site_work, out, cache))], cwd=tree,
                          capture_output=True, text=True, env=env)
    wall, after = time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if step == "new-run":
        (results / "20261201-new-run.jsonl").unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"site build of {n} records failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures.update(total=wall, cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                   max_rss_mib=after.ru_maxrss / 1024, step=step, results_files=len(list(results.glob("*.jsonl"))),
                   **_site_size(out))
    return figures


def search_timing(site: Path) -> dict:
    """Seconds to the first search result in the built site opened from disk (file://), in Debian's headless
    Chromium: the All cells page loaded with a query (cells/index.js searched, matching rows shown), and
    Material's search box on the home page (narrative pages, full text) once the page has loaded. Empty when
    selenium or Chromium is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return {}
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        return {}
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    out: dict = {}
    try:
        for query in ("0.48 fails", "h100-sm90-v3 works", "triton-ops-missing"):
            start = time.monotonic()
            driver.get((site / "cells" / "index.html").as_uri() + "?q=" + query.replace(" ", "+"))
            WebDriverWait(driver, 60, poll_frequency=0.02).until(
                lambda d: " of " in d.find_element(By.ID, "cell-filter-count").text)
            out[f"cells: {query}"] = (time.monotonic() - start,
                                      driver.find_element(By.ID, "cell-filter-count").text)
        driver.get((site / "index.html").as_uri())
        box = WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "input[data-md-component=search-query]"))
        driver.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
        time.sleep(3)  # the search worker has built its index
        start = time.monotonic()
        driver.execute_script("var b = arguments[0]; b.value = arguments[1]; "
                              "b.dispatchEvent(new Event('input', {bubbles: true})); "
                              "b.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true}));",
                              box, "4-bit quantization requires bitsandbytes")
        WebDriverWait(driver, 60, poll_frequency=0.02).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a"))
        first = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")[0].get_attribute("href") or ""
        out["material: 4-bit quantization requires bitsandbytes"] = (time.monotonic() - start,
                                                                      first.split("-public/")[-1])
    finally:
        driver.quit()
    return out


# ---------------------------------------------------------------------------------------------- report
def table(fig: dict) -> str:
    """The figures as a Markdown table, with each target's verdict."""
    rows = ["| Measurement | Figure | Target | Verdict |", "| --- | --- | --- | --- |"]

    def add(name: str, figure: str, target: str = "", ok: bool | None = None) -> None:
        rows.append(f"| {name} | {figure} | {target} | {'' if ok is None else ('met' if ok else 'MISSED')} |")

    setup = fig.get("setup", {})
    for inst in ("uv", "pip"):
        if inst in setup:
            s = setup[inst]
            add(f"cell setup, {inst}, cold (venv + install)", f"{s['cold']:.1f} s")
            add(f"cell setup, {inst}, warm (reused venv)", f"{s['warm']:.2f} s",
                "< 2 s" if inst == "uv" else "", s["warm"] < 2 if inst == "uv" else None)
    if "uv" in setup and "pip" in setup:
        ratio = setup["pip"]["warm"] / setup["uv"]["warm"]
        add("warm setup, pip / uv", f"{ratio:.1f}x", ">= 10x", ratio >= 10)
        add("cold setup, pip / uv", f"{setup['pip']['cold'] / setup['uv']['cold']:.1f}x")
    for p in fig.get("probe", []):
        if not p.get("preimport"):
            add(f"bare import floor (bnb {p['bnb']})", f"{p['bare_import']:.1f} s")
        what_if = ", what-if: load path imported in the parent" if p.get("preimport") else ""
        add(f"probe, cell of {p['recipes']} recipes ({p['recipes_run']} run), bnb {p['bnb']}{what_if}",
            f"{p['wall']:.1f} s = {p['ratio']:.2f}x floor; imports {p['imports']:.1f} s, load "
            f"{'/'.join(f'{x:.1f}' for x in p['load'] if x is not None) or '-'} s, forward "
            f"{max([x for x in p['forward'] if x is not None], default=0):.2f} s max",
            "< 2x floor", p["ratio"] < 2)
    m = fig.get("matrix", {})
    if "cold" in m:
        add("default cpu matrix, cold", f"{m['cold']:.0f} s ({m['records']} records)")
        add("default cpu matrix, warm, nothing new (temp venvs)", f"{m['warm']:.1f} s = {m['warm'] / m['cold']:.3f}x"
            f" cold, {m['new_records_warm']} new", "< 30 s", m["warm"] < 30)
    if "warm_existing" in m:
        w = m["warm_existing"]
        add("default cpu matrix, warm, nothing new (.nox venvs)", f"{w['warm']:.1f} s, {w['new_records']} new",
            "< 30 s", w["warm"] < 30)
    sites = fig.get("site", {})
    smallest = min(sites, key=int) if sites else ""

    def phases(s: dict) -> str:
        return (f"{s['total']:.1f} s wall, {s['cpu']:.0f} CPU s (aggregate {s['aggregate']:.1f}, render "
                f"{s['render']:.1f}, mkdocs {s['mkdocs']:.1f}{' skipped' if s.get('mkdocs_skipped') else ''})")

    def size(s: dict) -> str:
        search = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s["search_files_mib"].items()))
        return f"{s['site_mib']:.0f} MiB in {s['site_files']:,} files; search files (MiB): {search}"

    for n, s in sorted(sites.items(), key=lambda kv: int(kv[0])):
        per = s["total"] / s["records"] * 1000
        base = sites[smallest]["total"] / sites[smallest]["records"] * 1000
        big = int(n) >= 100000
        add(f"site build, {int(n):,} records in {s['results_files']:,} files ({s['cells']:,} cells), cold",
            f"{phases(s)}; {per:.2f} ms/record = {per / base:.2f}x the {int(smallest):,}-record rate",
            "< 60 s" if int(n) >= 10000 else "", s["total"] < 60 if int(n) >= 10000 else None)
        add(f"built site, {int(n):,} records", size(s), "< 300 MiB" if big else "",
            s["site_mib"] < 300 if big else None)
        add(f"largest search file, {int(n):,} records", f"{s['search_index_mib']:.2f} MiB", "< 8 MiB" if big else "",
            s["search_index_mib"] < 8 if big else None)
    for key, what in (("site_nothing_new", "nothing new"), ("site_new_run", "after one new run of 50 records")):
        again = fig.get(key)
        if again:
            add(f"site rebuild, {again['records']:,} records, {what}",
                f"{phases(again)}; cell pages {again['cells_rendered']} rendered, {again['cells_reused']} reused; "
                f"results files {again['details'].get('files_read', 0)} read, "
                f"{again['details'].get('files_cached', 0)} from the cache", "< 10 s" if "new run" in what else "",
                again["total"] < 10 if "new run" in what else None)
    for what, (seconds, result) in fig.get("search", {}).items():
        add(f"first search result from file://, {max(map(int, sites)):,} records, {what}",
            f"{seconds:.2f} s ({result})", "< 1 s", seconds < 1)
    base = fig.get("site_baseline")
    if base:
        now = sites.get(str(base["records"]))
        ratio = f" = {base['total'] / now['total']:.2f}x the time of this tree" if now else ""
        add(f"site build, {base['records']:,} records, main at {base['rev']}",
            f"{phases(base)}{ratio}; {size(base)}")
    sizes = sorted(sites, key=int)
    if len(sizes) > 1:
        small, big = sizes[-2], sizes[-1]
        grow = sites[big]["total"] / sites[small]["total"]
        add(f"site build growth, {int(small):,} -> {int(big):,} records", f"{grow:.1f}x time for "
            f"{int(big) / int(small):.0f}x records", "no worse than linear", grow <= int(big) / int(small))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one bnb (setup + probe), warm matrix only (no cold matrix), site on 100 and 1,000")
    parser.add_argument("--only", nargs="*", choices=["setup", "probe", "matrix", "site"],
                        help="run only these measurements")
    parser.add_argument("--bnb", nargs="*", default=["0.50.2", "0.47.0"], help="bitsandbytes for setup/probe")
    parser.add_argument("--sizes", nargs="*", type=int, help="synthetic record counts (default 100 1000 10000)")
    parser.add_argument("--out", type=Path, help="JSON of raw figures (default: a temp file, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp work dir")
    parser.add_argument("--baseline", metavar="REV",
                        help="also build the site with the code (matrix/, site/, mkdocs.yml) of git REV")
    parser.add_argument("--baseline-size", type=int, help="records for the baseline build (default: the largest)")
    parser.add_argument("--table", type=Path, metavar="JSON", help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    only = set(args.only or ["setup", "probe", "matrix", "site"])
    sizes = args.sizes or ([100, 1000] if args.quick else [100, 1000, 10000])
    bnbs = args.bnb[:1] if args.quick else args.bnb
    transformers = pick_profile(load_axes(), "cpu").transformers[0]
    work = Path(tempfile.mkdtemp(prefix="bnb-bench-"))
    fig: dict = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}, "quick": args.quick}
    started = time.monotonic()
    try:
        if "setup" in only:
            fig["setup"] = {"uv": setup_cell("uv", bnbs[0], transformers, work)}
            print(f"setup uv: {fig['setup']['uv']}", file=sys.stderr)
            fig["setup"]["pip"] = setup_cell("pip", bnbs[0], transformers, work)
            print(f"setup pip: {fig['setup']['pip']}", file=sys.stderr)
            for name in ("uv", "pip"):  # the venvs are ~1.5 GiB each
                shutil.rmtree(work / f"{name}-venv", ignore_errors=True)
                shutil.rmtree(work / f"{name}-cache", ignore_errors=True)
        if "probe" in only:
            fig["probe"] = [probe_cell(bnb, work, pre) for bnb in bnbs for pre in (False, True)]
            print(f"probe: {fig['probe']}", file=sys.stderr)
        if "matrix" in only:
            fig["matrix"] = {"warm_existing": matrix_warm_existing(work)}
            if not args.quick:
                fig["matrix"].update(matrix_cold_then_warm(work))
                shutil.rmtree(work / "matrix-nox", ignore_errors=True)
            print(f"matrix: {fig['matrix']}", file=sys.stderr)
        if "site" in only:
            fig["site"] = {}
            for n in sizes:
                fig["site"][str(n)] = site_build(n, work)
                print(f"site {n}: {fig['site'][str(n)]}", file=sys.stderr)
            fig["search"] = search_timing(work / f"site-{sizes[-1]}-{ROOT.name}-public")
            print(f"search: {fig['search']}", file=sys.stderr)
            for step, key in (("nothing-new", "site_nothing_new"), ("new-run", "site_new_run")):
                fig[key] = {"records": sizes[-1], **site_build(sizes[-1], work, step=step)}
                print(f"site {step}: {fig[key]}", file=sys.stderr)
            if args.baseline:
                n = args.baseline_size or sizes[-1]
                fig["site_baseline"] = {"rev": args.baseline, "records": n,
                                        **site_build(n, work, old_tree(args.baseline, work))}
                print(f"site baseline: {fig['site_baseline']}", file=sys.stderr)
    finally:
        fig["machine"]["load_after"] = os.getloadavg()
        fig["seconds"] = time.monotonic() - started
        out = args.out or work / "benchmark.json"
        out.write_text(json.dumps(fig, indent=1))
        if not args.keep:
            for child in work.iterdir():
                if child != out:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
            if not any(work.iterdir()):
                work.rmdir()
    print(table(fig))
    print(f"\nraw figures: {out}; {fig['seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

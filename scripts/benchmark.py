"""Benchmark bnb-matrix on this machine, in one run: cell setup (pip vs uv, cold vs warm), the probe against a
bare import, the whole default matrix (cold, then warm with nothing new) and the site build on synthetic records.

    .venv/bin/python scripts/benchmark.py --quick     # ~5 min: one cell, warm matrix, site on 100 / 1,000
    .venv/bin/python scripts/benchmark.py             # ~15-20 min: adds pip cold, the cold matrix, 10,000 records

Writes the raw figures as JSON (--out, default benchmark.json in a temp dir) and prints a Markdown table. Never
writes to results/ or .nox/: cold measurements use temp venvs, caches and results dirs. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matrix import measure  # noqa: E402
from matrix.axes import load_axes, pick_profile  # noqa: E402

BIN = Path(sys.executable).parent
TORCH = "2.13.0+cpu"


def timed(cmd: list[str], env: dict | None = None, cwd: Path = ROOT, check: bool = True) -> float:
    """Seconds one command takes; its output is discarded unless it fails."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, errors="replace")
    seconds = time.monotonic() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-3000:]}")
    return seconds


def env_with(**extra: str) -> dict:
    return {**measure.cell_env(), **extra}


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
    commands = measure.install_commands(python, axes.torch_builds[TORCH], bnb, transformers, "online", installer,
                                        constraints)
    if installer == "uv":
        make_venv = [measure.uv_binary(), "venv", "--python", sys.executable, str(venv)]
    else:
        make_venv = [str(BIN / "virtualenv"), "--python", sys.executable, str(venv)]
    out = {"venv_cold": timed(make_venv, env)}
    out["install_cold"] = sum(timed(cmd, env) for cmd in commands)
    out["cold"] = out["venv_cold"] + out["install_cold"]
    warm = [sum(timed(cmd, env) for cmd in commands) for _ in range(3)]  # reused venv: nothing to do
    out["warm_runs"] = warm
    out["warm"] = statistics.median(warm)
    return out


# ---------------------------------------------------------------------------------------------- the probe
def bare_import(python: Path, repeats: int = 3) -> dict:
    """The floor: `import torch, transformers, bitsandbytes` in a fresh interpreter of the cell's venv."""
    runs = [timed([str(python), "-c", "import torch, transformers, bitsandbytes"], env_with()) for _ in range(repeats)]
    return {"runs": runs, "median": statistics.median(runs)}


def probe_cell(bnb: str, work: Path) -> dict:
    """One cell of the default profile probed in its existing venv (.nox/...), records to a temp file: the
    probe's wall time and its own split (parent imports, per-recipe load / forward / process)."""
    axes = load_axes()
    profile = pick_profile(axes, "cpu")
    python = ROOT / ".nox" / f"probe-torch-2-13-0-cpu-bnb-{bnb.replace('.', '-')}" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `nox -s probe` once first")
    transformers = profile.transformers[0]
    runner = measure.runner_facts()["slug"]
    jobs = measure.plan_jobs(axes, profile, runner, TORCH, bnb, transformers, profile.install)
    out_file = work / f"probe-{bnb}.jsonl"
    start = time.monotonic()
    records = measure.run_probe(python, axes, profile, profile.shapes[0], jobs, {"run_id": "benchmark"}, out_file)
    wall = time.monotonic() - start
    floor = bare_import(python)
    ran = [r for r in records if r["outcome"] != "skip"]
    return {"bnb": bnb, "wall": wall, "bare_import": floor["median"], "bare_import_runs": floor["runs"],
            "ratio": wall / floor["median"], "recipes_run": len(ran), "recipes": len(records),
            "imports": records[0]["timings_s"].get("imports"),
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


def synthetic_records(n: int, runs_per_cell: int = 4, seed: int = 0) -> list[dict]:
    """`n` records varied from the real ones: each real cell (its recipes' records) is a template; synthetic
    cells get new runner slugs (8 per real runner) and bnb versions (.postN), each measured `runs_per_cell`
    times (new run ids and timestamps, a day apart). Timings and memory get +-20 % jitter so no two cells draw
    the same chart. About n / (recipes x runs) cells."""
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
        for run in range(runs_per_cell):
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
                    rec[group] = {k: round(v * rng.uniform(0.8, 1.2), 3) if isinstance(v, (int, float)) else v
                                  for k, v in rec[group].items()}
                out.append(rec)
        c += 1
    return out


SITE_PHASES = """
import json, sys, time
from pathlib import Path
from matrix import aggregate, render, sitebuild
from matrix.axes import load_axes
results, work, out = map(Path, sys.argv[1:4])
t = {}
s = time.monotonic(); axes = load_axes(); agg = aggregate.load(results, recipes=axes.recipes, warn=False)
t["aggregate"] = time.monotonic() - s
s = time.monotonic(); written = render.render_site(agg, work / "docs", axes=axes); t["render"] = time.monotonic() - s
s = time.monotonic(); sitebuild.run_mkdocs(sitebuild.write_config(work, work / "docs"), out)
t["mkdocs"] = time.monotonic() - s
t.update(records=len(agg.frame), cells=len(agg.verdicts), files=len(written.written))
print(json.dumps(t))
"""


def site_build(n: int, work: Path) -> dict:
    """aggregate + render + mkdocs build (--strict) of n synthetic records, in a fresh interpreter (so no chart
    cache carries over), each phase timed; plus the size of the built site and its search index."""
    results, site_work, out = work / f"site-{n}-results", work / f"site-{n}-work", work / f"site-{n}-public"
    results.mkdir()
    with open(results / "synthetic.jsonl", "w") as handle:
        for rec in synthetic_records(n):
            handle.write(json.dumps(rec, sort_keys=True) + "\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", SITE_PHASES, str(results), str(site_work), str(out)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["total"] = time.monotonic() - start
    index = out / "search" / "search_index.json"
    figures["search_index_mib"] = index.stat().st_size / 2**20 if index.exists() else 0.0
    figures["site_mib"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    return figures


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
        add(f"bare import floor (bnb {p['bnb']})", f"{p['bare_import']:.1f} s")
        add(f"probe, cell of {p['recipes']} recipes ({p['recipes_run']} run), bnb {p['bnb']}",
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
    smallest = min(sites, key=int) if sites else None
    for n, s in sorted(sites.items(), key=lambda kv: int(kv[0])):
        per = s["total"] / s["records"] * 1000
        base = sites[smallest]["total"] / sites[smallest]["records"] * 1000
        target, ok = ("< 60 s", s["total"] < 60) if int(n) >= 10000 else ("", None)
        add(f"site build, {int(n):,} records ({s['cells']} cells)",
            f"{s['total']:.1f} s (aggregate {s['aggregate']:.1f}, render {s['render']:.1f}, mkdocs "
            f"{s['mkdocs']:.1f}); {per:.1f} ms/record = {per / base:.2f}x the {int(smallest):,}-record rate; "
            f"search index {s['search_index_mib']:.1f} MiB", target, ok)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="uv cold+warm, pip warm only, one probe cell, warm matrix only, site on 100 and 1,000")
    parser.add_argument("--only", nargs="*", choices=["setup", "probe", "matrix", "site"],
                        help="run only these measurements")
    parser.add_argument("--bnb", nargs="*", default=["0.50.2", "0.47.0"], help="bitsandbytes for setup/probe")
    parser.add_argument("--sizes", nargs="*", type=int, help="synthetic record counts (default 100 1000 10000)")
    parser.add_argument("--out", type=Path, help="JSON of raw figures (default: a temp file, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp work dir")
    args = parser.parse_args(argv)
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
            fig["probe"] = [probe_cell(bnb, work) for bnb in bnbs]
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
    finally:
        fig["machine"]["load_after"] = os.getloadavg()
        fig["seconds"] = time.monotonic() - started
        out = args.out or work / "benchmark.json"
        out.write_text(json.dumps(fig, indent=1))
        if not args.keep:
            for child in work.iterdir():
                if child != out:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    print(table(fig))
    print(f"\nraw figures: {out}; {fig['seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())

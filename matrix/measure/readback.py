"""The host side of a pre-quantized cell: install one (torch, bitsandbytes, transformers) into its venv, write
this cell's 4-bit checkpoints where none are cached, then read every folder any release wrote on this machine.

nox calls `readback_cell` from the `readback` session, one venv per (torch, bitsandbytes, transformers) so no
install switches versions back and forth. A read job is skipped once a record has its fingerprint (writer x reader
x recipe x shape); a write job runs whenever its folder is missing from the cache (a fresh machine) or `force`.
Run the session twice (`-- --phase write`, then plain) to read what writers after you in the list wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from matrix.measure import records
from matrix.measure.axes import Axes, Profile
from matrix.measure.install import install_cell, install_failure_type, install_reason
from matrix.measure.jobs import check_results_dir, check_run_id, measured_fingerprints, run_in_cell
from matrix.measure.prequant import shape_root, writer_key
from matrix.measure.runner import runner_facts
from matrix.measure.settings import Settings

PREQUANT_VERSION = 2  # bump when writing or reading measures differently: every read fingerprint changes
# 2: weights compared element-wise (sampled per layer, relative to the largest), not by checksums
PHASES = ("write", "read", "both")


def saved_with(requested: dict, bnb_config: dict) -> dict:
    """The `saved_with` object of a record: who wrote the checkpoint and how."""
    return {"bitsandbytes": requested["bnb"], "transformers": requested["transformers"],
            "torch": requested["torch"], "quant_type": bnb_config.get("bnb_4bit_quant_type", "fp4"),
            "double_quant": bool(bnb_config.get("bnb_4bit_use_double_quant", False))}


def fingerprint(axes: Axes, runner_slug: str, requested: dict, recipe: str, shape: str, role: str,
                writer: str) -> str:
    payload = {"runner": runner_slug, "torch": dataclasses.asdict(axes.torch_builds[requested["torch"]]),
               "requested": requested, "recipe": dataclasses.asdict(axes.recipes[recipe]),
               "shape": axes.shapes[shape].config, "role": role, "writer": writer, "prequant": PREQUANT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def plan(axes: Axes, profile: Profile, runner_slug: str, requested: dict, cache: Path, phase: str,
         measured: set[str], force: bool = False) -> list[dict]:
    """The jobs of one cell: writes (folder missing, or force), then reads of every complete folder in the cache
    not yet measured by this reader (its own folders included: the diagonal of the grid)."""
    jobs = []
    me = writer_key(requested)
    for shape_name in profile.shapes:
        shape = {"name": shape_name, "config": axes.shapes[shape_name].config}
        root = shape_root(cache, shape)
        for recipe_name in profile.recipes:
            recipe = axes.recipes[recipe_name]
            folder = root / me / recipe_name
            if phase != "read" and (force or not (folder / "writer.json").is_file()):
                jobs.append({"role": "write", "recipe": recipe_name, "shape": shape, "folder": str(folder),
                             "bnb_config": recipe.bnb_config, "saved_with": saved_with(requested, recipe.bnb_config),
                             "fingerprint": fingerprint(axes, runner_slug, requested, recipe_name, shape_name,
                                                        "write", me)})
            if phase == "write":
                continue
            for written in sorted(root.glob(f"*/{recipe_name}/writer.json")):
                writer = written.parent.parent.name
                fp = fingerprint(axes, runner_slug, requested, recipe_name, shape_name, "read", writer)
                if fp in measured and not force:
                    continue
                try:
                    who = json.loads(written.read_text())["saved_with"]
                except (OSError, ValueError, KeyError):
                    continue  # a folder this code did not write completely: not a checkpoint to judge
                jobs.append({"role": "read", "recipe": recipe_name, "shape": shape, "folder": str(written.parent),
                             "saved_with": who, "fingerprint": fp})
    return jobs


def run_jobs(python: Path, jobs: list[dict], shape: dict, base: dict, cache: Path, results_file: Path,
             timeout_s: int) -> list[dict]:
    """Run jobs (one shape) in the cell's interpreter; a job the process never recorded gets a crash/timeout
    record here with the stderr tail. Returns the records written."""
    limit = timeout_s * (len(jobs) + 2)
    written, code, timed_out, stderr = run_in_cell(python, ("-m", "matrix.measure.prequant"),
                                                   {"shape": shape, "cache": str(cache), "base": base, "jobs": jobs},
                                                   results_file, limit)
    done = {r.get("fingerprint") for r in written}
    runner = written[0]["runner"] if written else runner_facts()
    for job in jobs:
        if job["fingerprint"] in done:
            continue
        outcome, kind = ("timeout", "Timeout") if timed_out else ("crash", "ProcessDied")
        message = (f"prequant process exceeded {limit} s and was killed" if timed_out
                   else f"prequant process died (exit code {code}) before finishing this job")
        rec = records.failure(base, runner, job["recipe"], shape["name"], outcome, "process", kind, message, stderr,
                              fingerprint=job["fingerprint"], saved_with=job["saved_with"],
                              checks={"role": job["role"]}, exit_code=code)
        records.append(results_file, rec)
        written.append(dataclasses.asdict(rec))
    return written


def readback_cell(python: Path, axes: Axes, profile: Profile, torch: str, bnb: str, transformers: str,
                  results_dir: Path, run_id: str, installer: str, install: str | None = None,
                  phase: str = "both", force: bool = False, log=print,
                  settings: Settings = Settings()) -> list[dict]:
    """Install one cell, then write and/or read (phase) its pre-quantized checkpoints. Returns the new records."""
    install = settings.install_mode(profile, install)
    check_run_id(run_id)
    check_results_dir(results_dir)
    runner = runner_facts()
    results_file = results_dir / f"{run_id}.jsonl"
    requested = {"torch": torch, "bnb": bnb, "transformers": transformers}
    base = records.base(run_id, **requested, install=install,
                        installer="pip" if install == "system" else installer, probe_version=PREQUANT_VERSION,
                        torch_source="system image" if install == "system" else "venv", note=settings.install_note)
    started = time.monotonic()
    ok, install_log = install_cell(python, axes.torch_builds[torch], bnb, transformers, install, installer, settings)
    log(f"install {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
    measured = set() if force else measured_fingerprints(results_dir)
    cache = settings.cache
    new: list[dict] = []
    phases = ("write", "read") if phase == "both" else (phase,)
    for step in phases:
        jobs = plan(axes, profile, runner["slug"], requested, cache, step, measured, force)
        if not jobs:
            log(f"{step}: nothing to do")
            continue
        if not ok:
            kind = install_failure_type(install_log)
            for job in jobs:
                fp = "" if kind == "NetworkError" else job["fingerprint"]
                rec = records.failure(base, runner, job["recipe"], job["shape"]["name"], "fail", "install", kind,
                                      install_reason(install_log), install_log, fingerprint=fp,
                                      saved_with=job["saved_with"], checks={"role": job["role"]})
                records.append(results_file, rec)
                new.append(dataclasses.asdict(rec))
            continue
        for shape_name in profile.shapes:
            shape_jobs = [j for j in jobs if j["shape"]["name"] == shape_name]
            if shape_jobs:
                log(f"{step}: {len(shape_jobs)} job(s) on {shape_name}")
                new += run_jobs(python, shape_jobs, shape_jobs[0]["shape"], base, cache, results_file,
                                profile.timeout_s)
        measured |= {r.get("fingerprint", "") for r in new}
    return new

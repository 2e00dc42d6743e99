"""`python -m matrix doctor`: probe the environment it runs in with every recipe, offline, and say what to do.

It runs the same probe as the matrix (one process per recipe) on a tiny checkpoint it makes itself, classifies
each failure with the signature catalogue and prints the permanent URLs of the matching cell and error pages,
then a block to paste into an issue.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from matrix import measure, records, urls
from matrix.axes import load_axes, pick_profile


def run_doctor(shape: str = "tiny", recipes: list[str] | None = None, as_json: bool = False,
               timeout_s: int = 300, python: Path | None = None, out=sys.stdout) -> int:
    """Probe `python` (default: this interpreter). Exit status 0 if the plain recipe passes, 1 otherwise."""
    from matrix.signatures import classify_record, load_catalogue

    axes = load_axes()
    profile = pick_profile(axes)
    if shape not in axes.shapes:
        from matrix.errors import UserError

        raise UserError("--shape", f"unknown shape {shape!r}", f"allowed: {', '.join(axes.shapes)}")
    profile = dataclasses.replace(profile, recipes=tuple(recipes or profile.recipes), shapes=(shape,),
                                  timeout_s=timeout_s, budget_shapes=())
    for name in profile.recipes:
        if name not in axes.recipes:
            from matrix.errors import UserError

            raise UserError("--recipe", f"unknown recipe {name!r}", f"allowed: {', '.join(axes.recipes)}")
    runner = measure.runner_facts()
    jobs = measure.plan_jobs(axes, profile, runner["slug"], "installed", "installed", "installed", "doctor")
    base = {"run_id": "doctor", "schema": records.SCHEMA_VERSION,
            "requested": {"torch": "installed", "bnb": "installed", "transformers": "installed", "install": "doctor",
                          "installer": "", "runner": runner["slug"], "torch_source": "this environment"}}
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "doctor.jsonl"
        measure.run_probe(Path(python or sys.executable), axes, profile, shape, jobs, base, out_file)
        found = [r for r in records.iter_file(out_file) if isinstance(r, records.Record)]
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in found], indent=1), file=out)
        return 0 if any(r.recipe == "plain" and r.outcome == "pass" for r in found) else 1
    catalogue = load_catalogue()
    v = found[0].versions if found else {}
    torch_build = v.get("torch") or "not installed"
    cell = urls.absolute(urls.cell_path(runner["slug"], torch_build, v.get("bitsandbytes") or "none",
                                        v.get("transformers") or "none"))
    lines = [f"runner: {runner['slug']} ({runner.get('gpu_name') or runner.get('cpu_model')})",
             f"python {v.get('python', '?')}, torch {torch_build} (CUDA {v.get('torch_cuda') or '-'}), "
             f"bitsandbytes {v.get('bitsandbytes') or '-'}, transformers {v.get('transformers') or '-'}, "
             f"accelerate {v.get('accelerate') or '-'}", ""]
    for rec in found:
        verdict = f"{rec.recipe:<12} {rec.outcome.upper():<8}"
        if rec.outcome == "skip":
            verdict += f" {rec.skip_reason}"
        elif rec.outcome != "pass":
            slug = classify_record(rec) or "unclassified"
            title = catalogue[slug].title if slug in catalogue else slug
            verdict += f" {title}\n{'':<22}{urls.absolute(urls.error_path(slug))}"
        else:
            verdict += f" load {rec.timings_s.get('load', 0):.2f} s, rel. error {rec.checks.get('rel_error')}"
        lines.append(verdict)
    lines += ["", f"measured matrix for this combination: {cell}", "", "--- paste into an issue ---",
              "```", *[ln for ln in lines[:2]],
              *[f"{r.recipe}: {r.outcome}" + (f" ({classify_record(r)})" if r.outcome not in ("pass", "skip") else "")
                for r in found], cell, "```"]
    print("\n".join(lines), file=out)
    return 0 if any(r.recipe == "plain" and r.outcome == "pass" for r in found) else 1

"""`python -m matrix doctor`: probe the environment it runs in with every recipe, offline, and say what to do.

It runs the same probe as the matrix (one process per recipe) on a tiny checkpoint it makes itself, classifies
each failure with the signature catalogue and prints the permanent URLs of the matching cell and error pages,
then a block to paste into an issue.

Stdlib (and packaging, through measure) only: it runs inside whatever environment the user has, with no pandas
or jinja. The report is built by pure functions of the records (`format_report`, `paste_block`, `verdict`), so
it can be tested without torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from matrix import urls
from matrix.measure import records
from matrix.measure.runner import runner_facts
from matrix.measure.settings import Settings
from matrix.diagnose.signatures import Signature, classify_record, default_catalogue, find_warnings

PASTE_START, PASTE_END = "--- paste into an issue ---", "--- end ---"
MISSING = "-"


@dataclass(frozen=True)
class Verdict:
    """What one recipe's record says, ready to print."""

    recipe: str
    outcome: str  # pass, fail, crash, timeout, skip
    slug: str = ""  # error signature of a failure
    title: str = ""  # its title
    url: str = ""  # its permanent page
    detail: str = ""  # pass: timing and error; skip: reason; unclassified: the exception line
    warnings: tuple[str, ...] = ()  # warning signature slugs found in stderr


def _versions(found: Iterable[Any]) -> dict[str, Any]:
    """The installed versions the probe reported (crash fill-in records carry none)."""
    for rec in found:
        v = getattr(rec, "versions", None)
        if isinstance(v, dict) and v:
            return v
    return {}


def cell_url(runner_slug: str, versions: dict[str, Any]) -> str:
    """The matrix page of this runner x installed torch build x bitsandbytes x transformers."""
    return urls.absolute(urls.cell_path(runner_slug or "unknown", versions.get("torch") or "none",
                                        versions.get("bitsandbytes") or "none", versions.get("transformers") or "none"))


def _first_line(text: str, width: int = 160) -> str:
    line = next((ln.strip() for ln in str(text or "").splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def verdict(rec: Any, catalogue: dict[str, Signature] | None = None) -> Verdict:
    """Classify one record: the signature, its title and page for failures, timing for passes."""
    catalogue = catalogue if catalogue is not None else default_catalogue()
    outcome = str(getattr(rec, "outcome", "") or "fail")
    recipe = str(getattr(rec, "recipe", "") or "?")
    warnings = tuple(find_warnings(getattr(rec, "stderr_tail", "") or "", catalogue))
    if outcome == "skip":
        return Verdict(recipe, outcome, detail=str(getattr(rec, "skip_reason", "") or ""), warnings=warnings)
    if outcome == "pass":
        timings = getattr(rec, "timings_s", None) or {}
        checks = getattr(rec, "checks", None) or {}
        parts = []
        if isinstance(timings.get("load"), (int, float)):
            parts.append(f"load {timings['load']:.2f} s")
        if checks.get("rel_error") is not None:
            parts.append(f"rel. error {checks['rel_error']:.3g}" if isinstance(checks["rel_error"], (int, float))
                         else f"rel. error {checks['rel_error']}")
        return Verdict(recipe, outcome, detail=", ".join(parts), warnings=warnings)
    slug = classify_record(rec) or "unclassified"
    sig = catalogue.get(slug)
    detail = ""
    if slug in ("unclassified", "crash"):
        error_type = str(getattr(rec, "error_type", "") or "")
        message = _first_line(getattr(rec, "error_message", "") or "")
        detail = f"{error_type}: {message}" if error_type and message else (error_type or message)
    return Verdict(recipe, outcome, slug=slug, title=sig.title if sig else slug,
                   url=urls.absolute(urls.error_path(slug)), detail=detail, warnings=warnings)


def environment_lines(runner: dict[str, Any], versions: dict[str, Any]) -> list[str]:
    """Two lines: the machine and the installed versions."""
    machine = runner.get("gpu_name") or runner.get("cpu_model") or "unknown machine"
    extra = f", driver {runner['driver']}" if runner.get("driver") else ""
    return [f"runner: {runner.get('slug') or 'unknown'} ({machine}{extra})",
            f"python {versions.get('python') or '?'}, torch {versions.get('torch') or 'not installed'} "
            f"(CUDA {versions.get('torch_cuda') or MISSING}), bitsandbytes {versions.get('bitsandbytes') or MISSING}, "
            f"transformers {versions.get('transformers') or MISSING}, "
            f"accelerate {versions.get('accelerate') or MISSING}"]


def paste_block(verdicts: list[Verdict], runner: dict[str, Any], versions: dict[str, Any]) -> str:
    """A short fenced block for an issue: environment, one line per recipe with its signature, the cell page."""
    lines = ["```text", "bnb-matrix doctor", *environment_lines(runner, versions)]
    for v in verdicts:
        line = f"{v.recipe}: {v.outcome}"
        if v.slug:
            line += f" [{v.slug}] {v.url}"
        elif v.outcome == "skip" and v.detail:
            line += f" ({v.detail})"
        lines.append(line)
    lines += [f"cell: {cell_url(str(runner.get('slug') or ''), versions)}", "```"]
    return "\n".join(lines)


def format_report(found: list[Any], runner: dict[str, Any] | None = None,
                  catalogue: dict[str, Signature] | None = None) -> str:
    """The whole human-readable report for the probe's records."""
    catalogue = catalogue if catalogue is not None else default_catalogue()
    runner = runner or next((r.runner for r in found if getattr(r, "runner", None)), {}) or {}
    versions = _versions(found)
    verdicts = [verdict(r, catalogue) for r in found]
    lines = [*environment_lines(runner, versions), ""]
    if not verdicts:
        lines.append("no recipe was measured")
    for v in verdicts:
        head = f"{v.recipe:<12} {v.outcome.upper():<8}"
        if v.slug:
            lines.append(f"{head} {v.title} [{v.slug}]")
            lines.append(f"{'':<22}{v.url}")
            if v.detail:
                lines.append(f"{'':<22}{v.detail}")
        else:
            lines.append(f"{head} {v.detail}".rstrip())
        for slug in v.warnings:
            sig = catalogue.get(slug)
            lines.append(f"{'':<22}note: {sig.title if sig else slug} {urls.absolute(urls.error_path(slug))}")
    lines += ["", f"measured matrix for this combination: {cell_url(str(runner.get('slug') or ''), versions)}", "",
              PASTE_START, paste_block(verdicts, runner, versions), PASTE_END]
    return "\n".join(lines)


def exit_status(found: list[Any], baseline: str = "plain") -> int:
    """0 when the baseline recipe passed (or, when it was not run, every recipe run passed); 1 otherwise."""
    plain = [r for r in found if getattr(r, "recipe", "") == baseline]
    if plain:
        return 0 if all(r.outcome == "pass" for r in plain) else 1
    ran = [r for r in found if getattr(r, "outcome", "") != "skip"]
    return 0 if ran and all(r.outcome == "pass" for r in ran) else 1


def plan(recipes: Iterable[str], shape: str) -> list[Any]:
    """One job per recipe on `shape`, no VRAM budget; fingerprints only tie records back to their jobs."""
    from matrix.measure.jobs import Job

    return [Job(recipe, shape, None, f"doctor-{recipe}-{shape}") for recipe in recipes]


def run_doctor(shape: str = "tiny", recipes: list[str] | None = None, as_json: bool = False,
               timeout_s: int = 300, python: Path | None = None, out=sys.stdout,
               settings: Settings | None = None) -> int:
    """Probe `python` (default: this interpreter) and print the report; returns `exit_status`."""
    from matrix.measure import install, jobs as measure
    from matrix.measure.axes import load_axes, pick_profile
    from matrix.errors import UserError

    settings = settings or Settings()
    axes = load_axes(settings.axes)
    if shape not in axes.shapes:
        raise UserError("--shape", f"unknown shape {shape!r}", f"allowed: {', '.join(axes.shapes)}")
    profile = pick_profile(axes, settings.profile)
    names = list(dict.fromkeys(recipes or profile.recipes))
    for name in names:
        if name not in axes.recipes:
            raise UserError("--recipe", f"unknown recipe {name!r}", f"allowed: {', '.join(axes.recipes)}")
    interpreter = Path(python or sys.executable)
    if "torch" not in install.present_versions(interpreter, ("torch",)):
        raise UserError("doctor", f"torch is not installed for {interpreter}, so there is nothing to probe",
                        "run doctor with the Python of the environment that loads your model, or pip install "
                        "torch bitsandbytes transformers accelerate there")
    runner = runner_facts()
    # A GPU-only recipe on a machine without a GPU is a skip, whatever else is broken in the environment.
    skipped = [] if runner.get("gpu_count") else [n for n in names if axes.recipes[n].requires == "gpu"]
    names = [n for n in names if n not in skipped]
    profile = dataclasses.replace(profile, recipes=tuple(names), shapes=(shape,), timeout_s=timeout_s,
                                  budget_shapes=())
    base = records.base("doctor", torch="installed", bnb="installed", transformers="installed", install="doctor",
                        installer="", runner=runner["slug"], torch_source="this environment")
    probe_log = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "doctor.jsonl"
        # run_probe echoes the probe's whole stderr; the records keep its tail, so the report stays short
        with contextlib.redirect_stderr(probe_log):
            measure.run_probe(interpreter, axes, profile, shape, plan(names, shape), base, out_file,
                              settings)
        found = [r for r in records.iter_file(out_file) if isinstance(r, records.Record)]
    found += [records.Record(run_id=found[0].run_id, timestamp=found[0].timestamp, runner=found[0].runner,
                             requested=found[0].requested, versions=found[0].versions, recipe=name, shape=shape,
                             outcome="skip", skip_reason="this recipe offloads from a GPU; this runner has no GPU")
              for name in skipped if found]
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in found], indent=1), file=out)
    else:
        if not _versions(found):  # every recipe died before reporting: ask the interpreter directly
            present = install.present_versions(interpreter)
            found = [dataclasses.replace(r, versions={k: v for k, v in present.items() if v}) for r in found]
        print(format_report(found, runner), file=out)
    return exit_status(found, axes.baseline)

"""Hostile records against the published matrix (issue 24): does any record still break it?

    python scripts/adversary.py [--results results] [--wide 400] [--wider 400] [--keep DIR]

Copies the results folder aside, builds the site from it as it is, then again with a file of hostile lines added
(`hostile_lines`: numbers of any size, lone surrogates, reserved names, wide and deep groups, future dates, other
spellings of real names, bad axes-style values), plus `--wide` valid records that each carry the most unknown keys
the schema keeps and `--wider` records of 256 unknown keys each (each must be one warning). Each build runs as
`python -m matrix site` under /usr/bin/time -v. Reports: exit codes, warnings against bad lines, how many real
cells changed verdict or badge, whether a future date was published, wall time and peak memory of both builds.
Exit 1 if the hostile build failed, a bad line went unwarned, or a cell changed. tests/test_hostile.py builds
over the same lines (small results), so each case is provoked in the test suite too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HUGE = "9" * 400  # an integer of 400 digits: OverflowError in float(), once a traceback
HUGER = "9" * 5000  # over Python's 4,300-digit limit: json.loads raises ValueError, once uncaught


def _dump(data: dict[str, Any], **raw: str) -> str:
    """`data` as one JSON line, with `raw` (dotted path -> JSON text) spliced in as written (a number json.dumps
    cannot write, for one)."""
    data = json.loads(json.dumps(data))
    marks = {}
    for index, (dotted, text) in enumerate(raw.items()):
        target = data
        *parents, name = dotted.split(".")
        for parent in parents:
            target = target[parent]
        target[name] = f"@@RAW{index}@@"
        marks[f'"@@RAW{index}@@"'] = text
    line = json.dumps(data, sort_keys=True)
    for mark, text in marks.items():
        line = line.replace(mark, text)
    return line


def _set(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    for dotted, value in changes.items():
        target = out
        *parents, name = dotted.split("__")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return out


def hostile_lines(good: dict[str, Any]) -> dict[str, str]:
    """name -> one JSON line that the reader must refuse with one warning. `good` is a real record (fail or pass)
    of a real cell: each line is a variant of it, so a line that got through would change that cell."""
    wide = {f"k{i:03d}": i for i in range(256)}
    deep = [["x" * 290] * 200] * 200  # every list within the entry limit, 11 MB as a whole
    lines = {
        "huge-int-timing": _dump(good, **{"timings_s.load": HUGE}),
        "huge-int-exit-code": _dump(good, exit_code=HUGE),
        "huge-int-budget": _dump(good, budget_gib=HUGE),
        "huge-int-in-checks": _dump(good, **{"checks.rel_error": "-" + HUGE}),
        "over-4300-digits": _dump(good, **{"memory_mib.footprint": HUGER}),
        "surrogate-message": _dump(_set(good, error_message="bad \ud800 text")),
        "surrogate-gpu-name": _dump(_set(good, runner__gpu_name="H100 \udfff")),
        "reserved-recipe": _dump(_set(good, recipe="index.md")),
        "reserved-runner": _dump(_set(good, runner__slug="index.md")),
        "reserved-shape": _dump(_set(good, shape="404")),
        "reserved-bnb": _dump(_set(good, requested__bnb="sitemap.xml")),
        "wide-checks": _dump(_set(good, checks=wide)),
        "wide-runner": _dump(_set(good, runner={**good["runner"], **{f"x{k}": v for k, v in wide.items()}})),
        "deep-checks": _dump(_set(good, checks={"deep": deep})),
        "future-9999": _dump(_set(good, timestamp="9999-12-31T23:59:59Z")),
        "future-next-week": _dump(_set(good, timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime(time.time() + 7 * 86400)))),
        "not-a-time": _dump(_set(good, timestamp="yesterday")),
        "run-id-85": _dump(_set(good, run_id="r" * 85)),
        "version-epoch": _dump(_set(good, versions__torch="1!0.45.5")),
        "nan-check": _dump(good, **{"checks.rel_error": "NaN"}),
    }
    # other spellings of the real names: same URL, so they would replace the real page (and turn its badge red)
    torch, recipe, runner = good["requested"]["torch"], good["recipe"], good["runner"]["slug"]
    spelled = torch.replace("+", "-").upper() if "+" in torch else torch + "+"  # '2.15.0+' reads '2.15.0' too
    lines["spelling-torch"] = _dump(_set(good, requested__torch=spelled, outcome="crash"))
    lines["spelling-recipe"] = _dump(_set(good, recipe=recipe.capitalize(), outcome="crash"))
    other = runner.replace("_", "-") if "_" in runner else runner.replace("-", "_", 1)
    lines["spelling-runner"] = _dump(_set(good, runner__slug=other, outcome="crash"))
    return lines


def wide_records(good: dict[str, Any], count: int) -> list[str]:
    """`count` valid records in cells of their own, each with the most unknown keys a group may keep, all
    different: columns and memory must stay bounded however many such records come."""
    try:
        from matrix.measure.schema import EXTRA_KEYS
    except ImportError:  # a checkout before the schema (to compare): the same 16
        EXTRA_KEYS = 16
    out = []
    for n in range(count):
        extra = {f"w{n:05d}_{i:02d}": n + i for i in range(EXTRA_KEYS)}
        out.append(_dump(_set(good, runner__slug=f"adversary-wide-{n % 7}", run_id=f"adversary-{n:05d}",
                              checks={**good["checks"], **extra}, timings_s={**good["timings_s"], **extra},
                              fingerprint=f"adversary-{n}")))
    return out


def wider_records(good: dict[str, Any], count: int) -> list[str]:
    """`count` records of 256 keys of their own in checks and in runner, all different (on main, 400 of them
    took 5.2 GB): each must be one warning, and memory must not grow with them."""
    out = []
    for n in range(count):
        keys = {f"z{n:05d}_{i:03d}": i for i in range(256)}
        out.append(_dump(_set(good, run_id=f"wider-{n:05d}", checks=keys,
                              runner={**good["runner"], **{f"r{k}": v for k, v in keys.items()}})))
    return out


def build(results: Path, out: Path) -> dict[str, Any]:
    """`python -m matrix site` under /usr/bin/time -v: exit code, warnings, wall seconds, peak memory (MiB)."""
    command = [sys.executable, "-m", "matrix", "site", "--results", str(results), "--out", str(out)]
    if Path("/usr/bin/time").exists():
        command = ["/usr/bin/time", "-v", *command]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, errors="replace")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return {"code": proc.returncode, "seconds": round(time.monotonic() - started, 1),
            "peak_mib": round(int(peak.group(1)) / 1024) if peak else None,
            "warnings": [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")],
            "traceback": "Traceback" in proc.stderr, "tail": proc.stderr.strip().splitlines()[-3:]}


def cells(site: Path) -> dict[str, tuple[str, bytes]]:
    """cell path -> (verdict, badge.svg bytes) of a built site (none when the build left no site)."""
    if not (site / "data" / "matrix.json").is_file():
        return {}
    matrix = json.loads((site / "data" / "matrix.json").read_text(encoding="utf-8"))
    rows = matrix["cells"] if isinstance(matrix, dict) and "cells" in matrix else matrix
    out = {}
    for row in rows:
        badge = site / row["cell_path"] / "badge.svg"
        out[row["cell_path"]] = (row["verdict"], badge.read_bytes() if badge.is_file() else b"")
    return out


def future_dates(site: Path) -> list[str]:
    """Dates later than tomorrow anywhere in the built site's text."""
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    found = set()
    for path in site.rglob("*") if site.is_dir() else ():
        if path.suffix in (".html", ".json", ".csv", ".svg", ".xml"):
            for date in re.findall(r"\b(\d{4}-\d\d-\d\d)\b", path.read_text(encoding="utf-8", errors="replace")):
                if date > tomorrow:
                    found.add(f"{path.relative_to(site)}: {date}")
    return sorted(found)[:5]


def pick_good(results: Path) -> dict[str, Any]:
    """The newest passing whole-card record of the baseline recipe: a crash of it spelled otherwise would turn
    its cell's badge red if it got through."""
    from matrix.measure.records import read_results

    found, _ = read_results(results)
    from matrix.measure.axes import load_axes

    baseline = load_axes().baseline
    passing = [r for r in found if r.outcome == "pass" and r.budget_gib is None and r.recipe == baseline]
    record = max(passing or found, key=lambda r: (r.timestamp, r.run_id))
    return dataclasses.asdict(record)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--wide", type=int, default=400, help="valid wide records added (default: 400)")
    parser.add_argument("--wider", type=int, default=400, help="records of 256 unknown keys added (default: 400)")
    parser.add_argument("--keep", help="keep the work folder here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    work = Path(args.keep or tempfile.mkdtemp(prefix="adversary-"))
    work.mkdir(parents=True, exist_ok=True)
    plain, hostile = work / "results-plain", work / "results-hostile"
    for folder in (plain, hostile):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(args.results, folder)
    good = pick_good(plain)
    lines = hostile_lines(good)
    (hostile / "zz-adversary.jsonl").write_text("".join(line + "\n" for line in lines.values()), encoding="utf-8")
    (hostile / "zz-adversary-wide.jsonl").write_text("".join(line + "\n" for line in wide_records(good, args.wide)),
                                                     encoding="utf-8")
    (hostile / "zz-adversary-wider.jsonl").write_text("".join(line + "\n" for line in wider_records(good, args.wider)),
                                                      encoding="utf-8")
    before = build(plain, work / "public-plain")
    after = build(hostile, work / "public-hostile")
    real, now = cells(work / "public-plain"), cells(work / "public-hostile")
    changed = sorted(path for path in real if now.get(path) != real[path])
    warned = {w.split(": ")[1].rsplit(":", 1)[-1] for w in after["warnings"] if "zz-adversary.jsonl:" in w}
    unwarned = [name for number, name in enumerate(lines, start=1) if str(number) not in warned]
    wider_warned = sum("zz-adversary-wider.jsonl:" in w for w in after["warnings"])
    future = future_dates(work / "public-hostile")
    report = {
        "hostile_lines": len(lines), "wide_records": args.wide,
        "plain_build": {k: v for k, v in before.items() if k != "warnings"} | {"warnings": len(before["warnings"])},
        "hostile_build": {k: v for k, v in after.items() if k != "warnings"} | {"warnings": len(after["warnings"])},
        "warnings_for_hostile_lines": len(warned), "unwarned": unwarned, "wider_records": args.wider,
        "warnings_for_wider_records": wider_warned,
        "real_cells": len(real), "cells_changed": changed[:10], "cells_changed_count": len(changed),
        "future_dates_published": future, "work": str(work),
    }
    print(json.dumps(report, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    ok = (after["code"] == 0 and not after["traceback"] and not unwarned and not changed and not future
          and wider_warned == args.wider)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))

"""Peak memory of reading and exporting many records (issue 17, point 8). See BENCHMARKS.md, "Memory".

    .venv/bin/python scripts/memory_bench.py --lines 200000 --dir /tmp/results-200k          # make + measure
    PYTHONPATH=/tmp/old-tree .venv/bin/python scripts/memory_bench.py --dir /tmp/results-200k  # another code base

Makes `--lines` records (once; an existing dir is reused) by repeating the real records in results/ as new runs
(new run id, timestamp and fingerprint; runner slug varied 8 ways, so about 8x the real cells), optionally with
`--huge N` records carrying a 50 MB error message. Then, in a fresh interpreter, reads and aggregates them
(`aggregate.load`) and makes the data exports (`aggregate.exports`, `findings.exports`) as a site build does, and
prints one JSON line: peak RSS (getrusage), seconds, records, problems and the size of each export.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = """
import json, resource, sys, time
from pathlib import Path
import matrix
from matrix.publish import aggregate, exports, findings
from matrix.measure.axes import load_axes
from matrix.diagnose.signatures import load_catalogue
start = time.monotonic()
axes = load_axes()
agg = aggregate.load(Path(sys.argv[1]), recipes=axes.recipes, warn=False, baseline=axes.baseline)
read_s = time.monotonic() - start
files = dict(exports.exports(agg))
found = findings.compute(agg, axes.recipes, axes.baseline, dict(load_catalogue()))
files.update(findings.exports(found))
print(json.dumps({"code": str(Path(matrix.__file__).parent.parent), "records": len(agg.frame),
                  "problems": len(agg.problems), "read_aggregate_s": round(read_s, 1),
                  "total_s": round(time.monotonic() - start, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "exports_mib": {k: round(len(v) / 2**20, 1) for k, v in sorted(files.items())}}))
"""


def make(target: Path, lines: int, huge: int) -> None:
    """Write `lines` records (plus `huge` with a 50 MB message) into target/bench.jsonl, streaming."""
    real = [line for path in sorted((ROOT / "results").glob("*.jsonl")) for line in path.open() if line.strip()]
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "bench.jsonl", "w", encoding="ascii") as out:
        for i in range(lines):
            run, rec = divmod(i, len(real))
            data = json.loads(real[rec])
            data["runner"]["slug"] = f"{data['runner']['slug']}-v{run % 8}"
            data["run_id"] = f"2026{1 + run % 9:02d}01T000000Z-{data['runner']['slug']}-{run:05x}"
            data["timestamp"] = f"2026-{1 + run % 9:02d}-{1 + run % 28:02d}T{run % 24:02d}:{run % 60:02d}:00Z"
            data["fingerprint"] = f"{run:08x}{rec:04x}"
            out.write(json.dumps(data, sort_keys=True) + "\n")
        for i in range(huge):
            data = json.loads(real[0])
            data.update(outcome="fail", stage="load", error_type="RuntimeError", run_id=f"huge-{i}",
                        error_message="A" * 50_000_000)
            out.write(json.dumps(data, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="results dir to measure (made if missing)")
    parser.add_argument("--lines", type=int, default=200_000, help="records to make when --dir is missing")
    parser.add_argument("--huge", type=int, default=0, help="records with a 50 MB error message to add")
    args = parser.parse_args(argv)
    if not args.dir.exists():
        make(args.dir, args.lines, args.huge)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(args.dir)], env=env, check=False)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

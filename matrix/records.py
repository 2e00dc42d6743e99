"""The record: what one probe of one recipe in one cell measured. The contract between measuring and publishing.

Records are JSON lines under `results/`. This module owns the schema (see docs in `site/records.md`), is the one
place records are made (`base` + `draft`, validated by `from_dict`; the probe, measure.py's stand-in failure
records and the doctor all use it), reads results files tolerantly (a bad line is reported with file:line and
skipped, never fatal) and appends records so that an interrupted run loses at most the line in flight.
Stdlib only: the probe imports it as `matrix.records` inside each cell venv.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

SCHEMA_VERSION = 1
STDERR_TAIL = 6000  # characters of stderr kept per record
MESSAGE_LIMIT = 4000  # characters of an error message kept per record
OUTCOMES = ("pass", "fail", "crash", "timeout", "skip")
STAGES = ("install", "import", "checkpoint", "load", "check", "forward", "process", "")


@dataclass(frozen=True)
class Record:
    """One cell x recipe x shape (x VRAM budget) measurement. Nested groups stay plain dicts of scalars."""

    run_id: str
    timestamp: str  # ISO 8601, UTC
    runner: dict[str, Any]  # slug, kind (cpu/gpu), cpu_model, gpu_name, compute_capability, driver, gpus, ...
    requested: dict[str, Any]  # torch, bnb, transformers as asked for; install mode; installer
    versions: dict[str, Any]  # python, torch, torch_cuda, bitsandbytes, transformers, accelerate as installed
    recipe: str
    shape: str
    outcome: str  # one of OUTCOMES
    budget_gib: float | None = None  # emulated VRAM budget, None = the whole card
    stage: str = ""  # where it stopped: one of STAGES ("" when it passed)
    error_type: str = ""
    error_message: str = ""
    stderr_tail: str = ""
    skip_reason: str = ""
    exit_code: int | None = None  # of the recipe process; negative = killed by that signal
    timings_s: dict[str, float] = field(default_factory=dict)  # imports, load, forward, check, process
    memory_mib: dict[str, float] = field(default_factory=dict)  # gpu_load_peak, gpu_forward_peak, footprint, ...
    checks: dict[str, Any] = field(default_factory=dict)  # linear4bit, rel_error, finite, placement, ...
    env: dict[str, str] = field(default_factory=dict)  # environment the recipe set
    fingerprint: str = ""  # environment fingerprint used to skip already-measured work on re-runs
    schema: int = SCHEMA_VERSION

    @property
    def cell_key(self) -> tuple[str, str, str, str]:
        """(runner slug, torch build, bitsandbytes, transformers): what identifies a cell."""
        return (
            str(self.runner.get("slug", "")),
            str(self.requested.get("torch", "")),
            str(self.requested.get("bnb", "")),
            str(self.requested.get("transformers", "")),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=True)


class RecordProblem(ValueError):
    """A results line that cannot be used; `where` is file:line."""

    def __init__(self, where: str, what: str) -> None:
        self.where, self.what = where, what
        super().__init__(f"{where}: {what}")


_FIELDS = {f.name: f for f in dataclasses.fields(Record)}
_REQUIRED = [n for n, f in _FIELDS.items()
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
_DICT_FIELDS = {"runner", "requested", "versions", "timings_s", "memory_mib", "checks", "env"}
_STR_FIELDS = {"run_id", "timestamp", "recipe", "shape", "outcome", "stage", "error_type", "error_message",
               "stderr_tail", "skip_reason", "fingerprint"}


def from_dict(data: Any, where: str = "<record>") -> Record:
    """Validate one decoded JSON object into a Record, or raise RecordProblem naming `where`."""
    if not isinstance(data, dict):
        raise RecordProblem(where, f"expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise RecordProblem(where, f"'schema' must be an integer, got {schema!r}")
    if schema > SCHEMA_VERSION:
        raise RecordProblem(where, f"record has schema {schema}, this bnb-matrix reads up to {SCHEMA_VERSION}; "
                                   "upgrade bnb-matrix to read it")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise RecordProblem(where, f"missing key(s) {', '.join(missing)}")
    kwargs = {}
    for name, value in data.items():
        if name not in _FIELDS:
            continue  # unknown keys from a same-schema writer are ignored, not fatal
        if name in _DICT_FIELDS and not isinstance(value, dict):
            raise RecordProblem(where, f"'{name}' must be an object, got {type(value).__name__}")
        if name in _STR_FIELDS and not isinstance(value, str):
            raise RecordProblem(where, f"'{name}' must be a string, got {type(value).__name__}")
        kwargs[name] = value
    if kwargs["outcome"] not in OUTCOMES:
        raise RecordProblem(where, f"'outcome' is {kwargs['outcome']!r}, allowed: {', '.join(OUTCOMES)}")
    budget = kwargs.get("budget_gib")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))):
        raise RecordProblem(where, f"'budget_gib' must be a number or null, got {budget!r}")
    code = kwargs.get("exit_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise RecordProblem(where, f"'exit_code' must be an integer or null, got {code!r}")
    return Record(**kwargs)


def head_and_tail(text: str, limit: int = STDERR_TAIL) -> str:
    """The start and the end of a long text: the root cause is often printed first (bitsandbytes at import)
    and the traceback last, with pages of load report between them."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-(limit - head):]}"


def now() -> str:
    """The current time as records write it (ISO 8601, UTC, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def base(run_id: str, **requested: Any) -> dict[str, Any]:
    """What every record of one cell run shares: its run id, the schema and what was requested."""
    return {"run_id": run_id, "schema": SCHEMA_VERSION, "requested": dict(requested)}


def draft(base: dict[str, Any], runner: dict[str, Any], recipe: str, shape: str, **fields: Any) -> dict[str, Any]:
    """A record still being measured, as a dict with every field (defaults where `fields` says nothing) and the
    time now; fill it in, then `from_dict` it. `fields` must be Record fields (a typo fails here)."""
    unknown = set(fields) - set(_FIELDS)
    if unknown:
        raise TypeError(f"not record fields: {', '.join(sorted(unknown))}")
    data: dict[str, Any] = {name: (f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                                   else f.default) for name, f in _FIELDS.items() if name not in _REQUIRED}
    data.update(base, runner=runner, versions={}, recipe=recipe, shape=shape, outcome="", timestamp=now())
    data.update(fields)
    return data


def failure(base: dict[str, Any], runner: dict[str, Any], recipe: str, shape: str, outcome: str, stage: str,
            error_type: str, message: str, stderr: str, **fields: Any) -> Record:
    """A record for a job that failed before or outside the probe's own measuring (install, a dead process)."""
    return from_dict(draft(base, runner, recipe, shape, outcome=outcome, stage=stage, error_type=error_type,
                           error_message=message[-MESSAGE_LIMIT:], stderr_tail=head_and_tail(stderr), **fields))


def parse_line(line: str, where: str) -> Record:
    """Parse one JSON line; RecordProblem names `where` on any defect."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RecordProblem(where, f"not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]}); "
                                   "a run may have been cut off mid-write, delete or repair the line") from None
    return from_dict(data, where)


def iter_file(path: Path) -> Iterator[Record | RecordProblem]:
    """Yield a Record per good line and a RecordProblem per bad one (never raises for content)."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    for number, chunk in enumerate(lines, start=1):
        where = f"{path}:{number}"
        if not chunk.strip():
            continue
        if number == len(lines) and not raw.endswith(b"\n"):
            yield RecordProblem(where, "last line has no newline: the run writing it was interrupted; "
                                       "it is ignored (re-run to measure it again)")
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RecordProblem(where, f"not UTF-8 at byte {exc.start}; records are written as ASCII JSON")
            continue
        try:
            yield parse_line(text, where)
        except RecordProblem as problem:
            yield problem


def result_files(results_dir: Path) -> list[Path]:
    """Every results file below `results_dir`, in a stable order."""
    return sorted(p for p in results_dir.rglob("*.jsonl") if p.is_file())


def read_results(results_dir: Path) -> tuple[list[Record], list[RecordProblem]]:
    """All records below `results_dir` plus the problems found; raises ResultsError if the dir is unusable."""
    from matrix.errors import ResultsError

    if not results_dir.is_dir():
        raise ResultsError(str(results_dir), "results directory does not exist",
                           "pass --results DIR pointing at a folder of *.jsonl files, or run a probe first")
    records: list[Record] = []
    problems: list[RecordProblem] = []
    for path in result_files(results_dir):
        for item in iter_file(path):
            if isinstance(item, RecordProblem):
                problems.append(item)
            else:
                records.append(item)
    return records, problems


def append(path: Path, record: Record) -> None:
    """Append one validated record to a results file (see append_json); the only way records are written."""
    append_json(path, dataclasses.asdict(record))


def append_json(path: Path, data: dict[str, Any]) -> None:
    """Append one JSON object as one line with a single write + fsync: a kill loses at most this line.

    If the file ends in a torn line (a previous writer was killed mid-write), start on a fresh line so the torn
    fragment stays a single bad line instead of poisoning this record.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data_bytes = (json.dumps(data, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data_bytes = b"\n" + data_bytes
        os.write(fd, data_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)

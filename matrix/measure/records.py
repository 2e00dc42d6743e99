"""The record: what one probe of one recipe in one cell measured. The contract between measuring and publishing.

Records are JSON lines under `results/`. This module owns the schema (see docs in `site/records.md`), is the one
place records are made (`base` + `draft`, validated by `from_dict`; the probe, measure.py's stand-in failure
records and the doctor all use it), reads results files tolerantly (a bad line is reported with file:line and
skipped, never fatal) and appends records so that an interrupted run loses at most the line in flight.
Stdlib only: the probe imports it as `matrix.measure.records` inside each cell venv.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

SCHEMA_VERSION = 1
STDERR_TAIL = 6000  # characters of stderr kept per record
MESSAGE_LIMIT = 4000  # characters of an error message kept per record
TEXT_LIMIT = 8000  # characters of a free-text field (message, stderr, skip reason) kept on read: head + tail
LINE_LIMIT = 64 * 2**20  # bytes: a longer line is reported and skipped unread
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
    # pre-quantized checkpoints (matrix/measure/prequant.py): who wrote the checkpoint this record loaded
    # (bitsandbytes, transformers, torch, quant_type, double_quant); empty for on-the-fly 4-bit loads
    saved_with: dict[str, Any] = field(default_factory=dict)

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
_DICT_FIELDS = {"runner", "requested", "versions", "timings_s", "memory_mib", "checks", "env", "saved_with"}
_STR_FIELDS = {"run_id", "timestamp", "recipe", "shape", "outcome", "stage", "error_type", "error_message",
               "stderr_tail", "skip_reason", "fingerprint"}


# Records come from runners we do not control and are published on the open web, so every field is checked on
# read. What becomes a file name, a URL segment or a chart label (runner slug, requested versions, recipe, shape,
# run id) is an identifier: letters, digits and ._+- only, starting with a letter or digit, at most 64 characters.
# Other strings are labels (printable, one line, bounded); free text is capped; numbers are finite and in range.
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RUNNER_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
LABEL_LIMIT = 300
ITEMS_LIMIT = 256  # entries of one object or list inside a record
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TEXT_FIELDS = ("error_message", "stderr_tail", "skip_reason")
_NUMBER_GROUPS = {"timings_s": (0.0, 1e6, "seconds"), "memory_mib": (0.0, 1e8, "MiB")}
BUDGET_MAX_GIB = 1e4
EXIT_RANGE = (-2**31, 2**32)


def _fail(where: str, what: str) -> RecordProblem:
    return RecordProblem(where, what + "; the record is skipped (fix or delete the line)")


def _identifier(value: Any, name: str, where: str, pattern: re.Pattern[str] = IDENTIFIER,
                empty: bool = False) -> None:
    if empty and value == "":
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        if not isinstance(value, str):
            shown = f"of type {type(value).__name__}"
        else:
            shown = repr(value) if len(value) <= 60 else f"{value[:40]!r}... ({len(value)} characters)"
        raise _fail(where, f"{name} {shown} is not a valid name (allowed: {pattern.pattern})")


def _number(value: Any, name: str, where: str, low: float, high: float, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or not low <= value <= high:
        raise _fail(where, f"{name} is {value!r}, allowed: {low:g} to {high:g}{' ' + unit if unit else ''}")


def _value(value: Any, name: str, where: str, depth: int = 0) -> None:
    """A nested value: null, a boolean, a finite number, a label, or a small list/object of them."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _number(value, name, where, -1e15, 1e15)
    elif isinstance(value, str):
        if len(value) > LABEL_LIMIT or _UNPRINTABLE.search(value):
            raise _fail(where, f"{name} is not a one-line text of at most {LABEL_LIMIT} characters")
    elif isinstance(value, (list, dict)):
        if depth >= 3 or len(value) > ITEMS_LIMIT:
            raise _fail(where, f"{name} nests deeper than 3 or has more than {ITEMS_LIMIT} entries")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict):
                _identifier(key, f"key in {name}", where, KEY)
            _value(item, f"{name}.{key}", where, depth + 1)
    else:
        raise _fail(where, f"{name} has a value of type {type(value).__name__}")


def check_fields(kwargs: dict[str, Any], where: str) -> None:
    """Raise RecordProblem unless every field of a record (as Record's keyword arguments) is safe to publish:
    identifiers where names become paths and labels, finite numbers in range, bounded labels elsewhere."""
    runner, requested, versions = kwargs["runner"], kwargs["requested"], kwargs["versions"]
    _identifier(runner.get("slug"), "runner slug", where, RUNNER_SLUG)
    _identifier(requested.get("torch"), "requested torch", where)
    _identifier(requested.get("bnb"), "requested bnb", where)
    _identifier(requested.get("transformers", ""), "requested transformers", where, empty=True)
    for name in ("run_id", "recipe", "shape"):
        _identifier(kwargs[name], f"'{name}'", where)
    for key, version in versions.items():
        if version is not None:
            _identifier(version, f"versions.{key}", where, empty=True)
    if not re.fullmatch(r"[a-z_]{0,32}", kwargs.get("stage", "")):
        raise _fail(where, f"'stage' {kwargs['stage'][:40]!r} is not a stage name")
    budget = kwargs.get("budget_gib")
    if budget is not None:
        _number(budget, "'budget_gib'", where, 1e-3, BUDGET_MAX_GIB, "GiB")
    if kwargs.get("exit_code") is not None:
        _number(kwargs["exit_code"], "'exit_code'", where, *EXIT_RANGE)
    for group, (low, high, unit) in _NUMBER_GROUPS.items():
        for key, number in kwargs.get(group, {}).items():
            _identifier(key, f"key in {group}", where, KEY)
            if number is not None:
                _number(number, f"{group}.{key}", where, low, high, unit)
    for name in ("runner", "requested", "versions", "checks", "env", "saved_with"):
        _value(kwargs.get(name, {}), name, where)
    for name in ("timestamp", "error_type", "fingerprint"):
        _value(kwargs.get(name, ""), f"'{name}'", where)


def from_dict(data: Any, where: str = "<record>", shared: dict[str, str] | None = None,
              untrusted: bool = False) -> Record:
    """Validate one decoded JSON object into a Record, or raise RecordProblem naming `where`. Free text (error
    message, stderr, skip reason) is cut to TEXT_LIMIT characters, head and tail; `shared` (a dict kept across one
    read) lets equal texts of many records share one string. `untrusted` (reading results files) adds
    `check_fields`: writers make records from our own axes and measurements, and refusing one there would lose a
    measurement, so a bad name is caught where records are read, reported with file:line, the line kept to mend."""
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
    if untrusted:
        check_fields(kwargs, where)
    for name in _TEXT_FIELDS:
        if name in kwargs:
            text = head_and_tail(kwargs[name], TEXT_LIMIT)
            kwargs[name] = text if shared is None else shared.setdefault(text, text)
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


def parse_line(line: str | bytes, where: str, shared: dict[str, str] | None = None) -> Record:
    """Parse one untrusted JSON line (see from_dict); RecordProblem names `where` on any defect."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RecordProblem(where, f"not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]}); "
                                   "a run may have been cut off mid-write, delete or repair the line") from None
    return from_dict(data, where, shared, untrusted=True)


def iter_file(path: Path, shared: dict[str, str] | None = None) -> Iterator[Record | RecordProblem]:
    """Yield a Record per good line and a RecordProblem per bad one (never raises for content). Reads one line at
    a time (memory stays bounded by the largest line kept, not the file); a line over LINE_LIMIT bytes is
    skipped unread. `shared`: see from_dict."""
    shared = {} if shared is None else shared
    with open(path, "rb") as handle:
        number = 0
        while True:
            chunk = handle.readline(LINE_LIMIT + 1)
            if not chunk:
                return
            number += 1
            where = f"{path}:{number}"
            if len(chunk) > LINE_LIMIT and not chunk.endswith(b"\n"):
                while chunk and not chunk.endswith(b"\n"):  # skip the rest of the line without holding it
                    chunk = handle.readline(LINE_LIMIT)
                yield RecordProblem(where, f"line longer than {LINE_LIMIT // 2**20} MiB; records are far smaller, "
                                           "skipped (delete or repair the line)")
                continue
            if not chunk.strip():
                continue
            if not chunk.endswith(b"\n"):
                yield RecordProblem(where, "last line has no newline: the run writing it was interrupted; "
                                           "it is ignored (re-run to measure it again)")
                continue
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RecordProblem(where, f"not UTF-8 at byte {exc.start}; records are written as ASCII JSON")
                continue
            try:
                yield parse_line(text, where, shared)
            except RecordProblem as problem:
                yield problem


def result_files(results_dir: Path) -> list[Path]:
    """Every results file below `results_dir`, in a stable order."""
    return sorted(p for p in results_dir.rglob("*.jsonl") if p.is_file())


def iter_results(results_dir: Path, problems: list[RecordProblem]) -> Iterator[Record]:
    """Every good record below `results_dir`, one at a time (files sorted, then by line); each bad line's
    RecordProblem is appended to `problems`. Raises ResultsError if the dir is unusable."""
    from matrix.errors import ResultsError

    if not results_dir.is_dir():
        raise ResultsError(str(results_dir), "results directory does not exist",
                           "pass --results DIR pointing at a folder of *.jsonl files, or run a probe first")
    shared: dict[str, str] = {}  # equal messages and stderr tails (a failure re-measured) share one string
    for path in result_files(results_dir):
        for item in iter_file(path, shared):
            if isinstance(item, RecordProblem):
                problems.append(item)
            else:
                yield item


def read_results(results_dir: Path) -> tuple[list[Record], list[RecordProblem]]:
    """All records below `results_dir` plus the problems found; raises ResultsError if the dir is unusable."""
    problems: list[RecordProblem] = []
    return list(iter_results(results_dir, problems)), problems


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

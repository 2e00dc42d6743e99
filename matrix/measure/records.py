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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

from matrix.measure import schema

SCHEMA_VERSION = 1
STDERR_TAIL = 6000  # characters of stderr kept per record
MESSAGE_LIMIT = 4000  # characters of an error message kept per record
TEXT_LIMIT = schema.TEXT_LIMIT  # characters of a free-text field (message, stderr, skip reason) kept on read
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
    saved_with: dict[str, Any] = field(default_factory=dict)  # a prequantized checkpoint: versions that saved it
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
_DICT_FIELDS = {"runner", "requested", "versions", "timings_s", "memory_mib", "checks", "env", "saved_with"}
_STR_FIELDS = {"run_id", "timestamp", "recipe", "shape", "outcome", "stage", "error_type", "error_message",
               "stderr_tail", "skip_reason", "fingerprint"}


# Every field is checked on read against the one schema (matrix/measure/schema.py); these names stay here for
# the modules that read them from records.
IDENTIFIER, RUNNER_SLUG, KEY = schema.IDENTIFIER, schema.RUNNER_SLUG, schema.KEY
LABEL_LIMIT, ITEMS_LIMIT = schema.LABEL_LIMIT, schema.ITEMS_LIMIT


def check_fields(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """The record's fields made safe to publish (schema.check), or RecordProblem naming `where`."""
    try:
        return schema.check(kwargs)
    except schema.Invalid as exc:
        raise RecordProblem(where, f"{exc}; the record is skipped (fix or delete the line)") from None


def from_dict(data: Any, where: str = "<record>", shared: dict[str, str] | None = None,
              untrusted: bool = False) -> Record:
    """Validate one decoded JSON object into a Record, or raise RecordProblem naming `where`. Free text (error
    message, stderr, skip reason) is cut to TEXT_LIMIT characters, head and tail; `shared` (a dict kept across one
    read) lets equal texts of many records share one string. `untrusted` (reading results files) adds
    `check_fields`: writers make records from our own axes and measurements, and refusing one there would lose a
    measurement, so a bad name is caught where records are read, reported with file:line, the line kept to mend."""
    if not isinstance(data, dict):
        raise RecordProblem(where, f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordProblem(where, f"'schema' must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise RecordProblem(where, f"record has schema {version}, this bnb-matrix reads up to {SCHEMA_VERSION}; "
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
        kwargs = check_fields(kwargs, where)
    for name in schema.TEXT_FIELDS:
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
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of over 4,300 digits
        raise RecordProblem(where, f"not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]}); "
                                   "a run may have been cut off mid-write, delete or repair the line") from None
    return from_dict(data, where, shared, untrusted=True)


def iter_file(path: Path, shared: dict[str, str] | None = None) -> Iterator[Record | RecordProblem]:
    """Yield a Record per good line and a RecordProblem per bad one (never raises for content); see iter_located."""
    for _, item in iter_located(path, shared):
        yield item


def iter_located(path: Path, shared: dict[str, str] | None = None) -> Iterator[tuple[str, Record | RecordProblem]]:
    """(file:line, Record or RecordProblem) per non-blank line. Reads one line at a time (memory stays bounded by
    the largest line kept, not the file); a line over LINE_LIMIT bytes is skipped unread. `shared`: see from_dict.
    OSError (the file cannot be opened or read) is raised."""
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
                yield where, RecordProblem(where, f"line longer than {LINE_LIMIT // 2**20} MiB; records are far "
                                                  "smaller, skipped (delete or repair the line)")
                continue
            if not chunk.strip():
                continue
            if not chunk.endswith(b"\n"):
                yield where, RecordProblem(where, "last line has no newline: the run writing it was interrupted; "
                                                  "it is ignored (re-run to measure it again)")
                continue
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, RecordProblem(where, f"not UTF-8 at byte {exc.start}; records are written as ASCII JSON")
                continue
            try:
                yield where, parse_line(text, where, shared)
            except RecordProblem as problem:
                yield where, problem


def result_files(results_dir: Path, problems: list[RecordProblem] | None = None) -> list[Path]:
    """Every results file below `results_dir`, in a stable order. A folder that cannot be listed or searched is
    left out (a RecordProblem naming it in `problems`, when given), never a traceback."""
    found = []

    def unreadable(exc: OSError) -> None:
        if problems is not None:
            problems.append(RecordProblem(str(exc.filename), f"folder cannot be read ({exc.strerror}); skipped "
                                                             "(chmod u+rx it)"))

    for folder, subfolders, names in os.walk(results_dir, onerror=unreadable):
        subfolders.sort()
        for name in names:
            path = Path(folder) / name
            try:
                if name.endswith(".jsonl") and path.is_file():
                    found.append(path)
            except OSError as exc:  # listed but not searchable: its entries cannot be looked at
                unreadable(OSError(exc.errno, exc.strerror, folder))
                break
    return sorted(found)


def check_results_dir(results_dir: Path) -> None:
    """Raise ResultsError (one line) unless `results_dir` is a folder this user can list and search."""
    from matrix.errors import ResultsError

    if not results_dir.is_dir():
        raise ResultsError(str(results_dir), "results directory does not exist",
                           "pass --results DIR pointing at a folder of *.jsonl files, or run a probe first")
    if not os.access(results_dir, os.R_OK | os.X_OK):
        raise ResultsError(str(results_dir), "results directory cannot be read or searched",
                           "give this user read and search permission on it (chmod u+rx), or pass --results DIR")


def read_located(results_dir: Path, problems: list[RecordProblem]) -> list[tuple[str, Record]]:
    """(file:line, record) for every good record below `results_dir` (files sorted, then by line); each bad line,
    unreadable file or folder is a RecordProblem appended to `problems`. Raises ResultsError if the dir is unusable."""
    check_results_dir(results_dir)
    shared: dict[str, str] = {}  # equal messages and stderr tails (a failure re-measured) share one string
    found = []
    for path in result_files(results_dir, problems):
        try:
            for where, item in iter_located(path, shared):
                if isinstance(item, RecordProblem):
                    problems.append(item)
                else:
                    found.append((where, item))
        except OSError as exc:
            problems.append(RecordProblem(str(path), f"cannot be read ({exc.strerror or exc}); skipped"))
    return found


def iter_results(results_dir: Path, problems: list[RecordProblem]) -> Iterator[Record]:
    """Every good record below `results_dir`, one name per page (see one_identity); problems as read_located."""
    kept, clashes = one_identity(read_located(results_dir, problems))
    problems.extend(clashes)
    yield from kept


def read_results(results_dir: Path) -> tuple[list[Record], list[RecordProblem]]:
    """All records below `results_dir` plus the problems found; raises ResultsError if the dir is unusable."""
    problems: list[RecordProblem] = []
    return list(iter_results(results_dir, problems)), problems


NAMED = {"runner": lambda r: r.runner.get("slug", ""), "torch": lambda r: r.requested.get("torch", ""),
         "bnb": lambda r: r.requested.get("bnb", ""), "transformers": lambda r: r.requested.get("transformers", ""),
         "recipe": lambda r: r.recipe, "shape": lambda r: r.shape}


def one_identity(located: list[tuple[str, Record]], preferred: Iterable[str] = ()
                 ) -> tuple[list[Record], list[RecordProblem]]:
    """One page per name: where two spellings of a runner, version, recipe or shape have one URL form
    (`2.13.0+cpu` and `2.13.0-CPU`, `plain` and `Plain`), one spelling keeps it: one in `preferred` (the axes'
    names), else the one with more records, else the one measured first; each record of another spelling is
    refused with its file:line. Returns the records kept and the problems. (More records before the earliest:
    one back-dated line must not take a runner's page from its hundreds of real records.)"""
    preferred = set(preferred)
    refused: dict[int, RecordProblem] = {}
    for kind, name_of in NAMED.items():
        spellings: dict[str, dict[str, list[int]]] = {}
        for index, (_, record) in enumerate(located):
            name = str(name_of(record))
            spellings.setdefault(schema.url_form(name), {}).setdefault(name, []).append(index)
        for form, found in spellings.items():
            if len(found) < 2:
                continue
            keeper = min(found, key=lambda n: (n not in preferred, -len(found[n]),
                                               min(located[i][1].timestamp for i in found[n]), n))
            for name, indexes in found.items():
                for index in indexes if name != keeper else ():
                    refused.setdefault(index, RecordProblem(
                        located[index][0], f"{kind} {name!r} and {keeper!r} would share one page ({form}); "
                                           f"{keeper!r} keeps it and this record is skipped (spell it {keeper!r})"))
    kept = [record for index, (_, record) in enumerate(located) if index not in refused]
    return kept, [refused[i] for i in sorted(refused)]


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

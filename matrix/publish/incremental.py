"""What a site build keeps between builds, so a new run costs only its own records.

- **Rows per results file** (`load`): each *.jsonl file's records flattened into rows (`rows.raw_frame`, the
  costly part of aggregation: JSON, validation, signatures) are pickled under the cache folder, keyed by the file's
  path, size and modification time and by the code that reads them. A rebuild reads only new or changed files; the
  frames are concatenated and finished (`rows.finish`: duplicates, sort) as one.
- **Exports per results file** (`write_exports`): data/results.csv.gz and data/results.json.gz are gzip files made
  of one member per results file (gzip readers join members), each compressed once and cached under the same key
  plus the column list. Rows come grouped by results file (files in name order), sorted within each file.

The cache folder is `site/generated/cache/` (gitignored) or $BNB_MATRIX_SITE_CACHE. A cache that cannot be read
or written is skipped (the build goes on from the records).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import multiprocessing
import os
import pickle
import signal
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from matrix.measure import records as records_io, schema
from matrix.measure.records import RecordProblem
from matrix.publish import aggregate, exports, rows

ROOT = Path(__file__).resolve().parents[2]
_READER_CODE = [ROOT / "matrix" / "publish" / "aggregate.py", ROOT / "matrix" / "publish" / "rows.py",
                ROOT / "matrix" / "measure" / "records.py", ROOT / "matrix" / "measure" / "schema.py",
                *sorted((ROOT / "matrix" / "diagnose").rglob("*.py")), *sorted((ROOT / "matrix" / "data").rglob("*"))]
_EXPORT_CODE = [ROOT / "matrix" / "publish" / "exports.py", Path(__file__)]
GZIP_LEVEL = 6


def cache_dir() -> Path:
    return Path(os.environ.get("BNB_MATRIX_SITE_CACHE") or ROOT / "site" / "generated" / "cache")


def _code_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def file_key(path: Path, code: str) -> str:
    """The cache key of one results file: its path, size and modification time, and the reading code."""
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{code}".encode()).hexdigest()[:32]


def _read_cached(path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return None


def _write_cached(path: Path, value: Any) -> None:
    """Atomically (temp name + rename); a cache that cannot be written is skipped."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temp, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temp, path)


def _read(path: Path) -> tuple[pd.DataFrame, list[tuple[str, str]], list[tuple[str, Any]]] | str:
    """One results file: its on-the-fly records' rows (`rows.raw_frame`, with each line's file:line in
    `_where`), its bad lines, and its pre-quantized records (with `saved_with`: publish/prequant.py reads them as
    records) with their file:line; or why it cannot be read."""
    classify, find_warnings = _WORK.setdefault("signatures", aggregate._signature_functions())
    found: list[records_io.Record] = []
    where: list[str] = []
    bad: list[tuple[str, str]] = []
    prequant: list[tuple[str, Any]] = []
    try:
        for line, item in records_io.iter_located(path, _WORK.setdefault("shared", {})):
            if isinstance(item, RecordProblem):
                bad.append((item.where, item.what))
            elif item.saved_with:
                prequant.append((line, item))
            else:
                found.append(item)
                where.append(line)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}); skipped"
    frame = rows.raw_frame(found, classify, find_warnings)
    return (frame.assign(_where=where) if len(frame) else frame), bad, prequant


def one_identity(names: pd.DataFrame, preferred: set[str]) -> dict[str, RecordProblem]:
    """`records.one_identity` over a table of (`_where`, timestamp and the NAMED columns) of every record, one row
    each in file and line order: the file:line of each record whose spelling loses its URL form to another,
    with the problem to report."""
    refused: dict[str, RecordProblem] = {}
    for kind in records_io.NAMED:
        values = names[kind].astype(str)
        forms = values.map({v: schema.url_form(v) for v in values.unique()})
        spellings = values.groupby(forms).transform("nunique") if len(forms) else forms  # names per URL form
        clash = names[spellings > 1].assign(_name=values[spellings > 1], _form=forms[spellings > 1])
        for form, mine in clash.groupby("_form", sort=False):
            counts, first = mine.groupby("_name").size(), mine.groupby("_name")["timestamp"].min()
            keeper = min(counts.index, key=lambda n: (n not in preferred, -counts[n], first[n], n))
            for line, name in zip(mine["_where"], mine["_name"]):
                if name != keeper:
                    refused.setdefault(line, RecordProblem(
                        line, f"{kind} {name!r} and {keeper!r} would share one page ({form}); {keeper!r} keeps it "
                              f"and this record is skipped (spell it {keeper!r})"))
    return refused


def _pool_map(function: Any, jobs: list[Any]) -> list[Any]:
    """`function` over `jobs` in forked worker processes, one per usable CPU (serial for one job or one CPU)."""
    workers = min(_cpus(), len(jobs))
    # fork only from a process with no other thread: a lock another thread held at the fork stays held in the child
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return [function(job) for job in jobs]
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=worker_signals)
    try:
        done = pool.map(function, jobs, chunksize=1)
        pool.close()  # the workers exit on their own
        return done
    except BaseException:
        pool.terminate()  # interrupted: SIGTERM, which kills a worker quietly (worker_signals)
        raise
    finally:
        pool.join()


def worker_signals() -> None:
    """In a forked worker: Ctrl-C and SIGTERM are the parent's to handle (it stops the pool); the worker does not
    inherit the build's SIGTERM-as-KeyboardInterrupt handler, which printed a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load(paths: list[Path], problems: list[RecordProblem], preferred: Any = ()
         ) -> tuple[pd.DataFrame, list[str], list[str], list[Any]]:
    """The tidy frame of every on-the-fly record in `paths` (`rows.finish`, with a `_source` column: the index
    of the file in `paths`), its own problems (duplicates, timestamps), each file's cache key ('' when
    unreadable) and the pre-quantized records. One spelling per page (`one_identity`, `preferred`: the axes'
    names). Files not in the cache are read in parallel. Bad lines, unreadable files and refused spellings are
    appended to `problems`. Counts of files read and reused go to STATS."""
    code = _code_hash(_READER_CODE)
    keys: list[str] = []
    for path in paths:
        try:
            keys.append(file_key(path, code))
        except OSError as exc:
            problems.append(RecordProblem(str(path), f"cannot be read ({exc.strerror or exc}); skipped"))
            keys.append("")
    got = {i: _read_cached(cache_dir() / "rows" / f"{key}.pickle") for i, key in enumerate(keys) if key}
    todo = [i for i, value in got.items() if value is None]
    STATS.update(read=len(todo), cached=len(got) - len(todo))
    for i, value in zip(todo, _pool_map(_read, [paths[i] for i in todo])):
        if isinstance(value, str):
            problems.append(RecordProblem(str(paths[i]), value))
            keys[i] = ""
            continue
        got[i] = value
        _write_cached(cache_dir() / "rows" / f"{keys[i]}.pickle", value)
    frames, names, prequant = [], [], []
    named = list(records_io.NAMED)
    for i, key in enumerate(keys):
        if not key:
            continue
        frame, bad_lines, pre = got[i]
        problems.extend(RecordProblem(where, what) for where, what in bad_lines)
        if len(frame):
            frames.append(frame.assign(_source=i))
            names.append(frame[["_where", "timestamp", *named]].assign(_source=i))
        if pre:
            prequant += pre
            names.append(pd.DataFrame([{"_where": w, "timestamp": r.timestamp, "_source": i,
                                        **{k: str(f(r)) for k, f in records_io.NAMED.items()}} for w, r in pre]))
    table = pd.concat(names, ignore_index=True) if names else pd.DataFrame(columns=["_where", "timestamp", *named])
    if len(table):  # file order, then line order, as records.one_identity reports them
        table = table.assign(_line=table["_where"].str.rsplit(":", n=1).str[-1].astype(int))
        table = table.sort_values(["_source", "_line"], kind="mergesort")
    refused = one_identity(table, set(preferred))
    problems.extend(refused[w] for w in table["_where"] if w in refused)
    whole = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    if len(whole):
        whole = whole[~whole["_where"].isin(refused)].drop(columns="_where")
    frame, own = rows.finish(whole)
    return frame, own, keys, [r for w, r in prequant if w not in refused]


def cached_call(name: str, function: Any, *args: Any, code: list[Path]) -> Any:
    """`function(*args)`, remembered under the cache folder by the pickled arguments and the source files `code`
    (for slow pure functions of committed data, such as the predictions from the wheel readings)."""
    try:
        key = hashlib.sha256(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL) + _code_hash(code).encode())
    except (pickle.PicklingError, TypeError, AttributeError):
        return function(*args)
    path = cache_dir() / name / f"{key.hexdigest()[:32]}.pickle"
    value = _read_cached(path)
    if value is None:
        value = function(*args)
        _write_cached(path, value)
    return value


STATS: dict[str, int] = {"read": 0, "cached": 0}
_WORK: dict[str, Any] = {}  # per process: the signature memo, shared strings; the exports' frame for forked workers


def _members(positions: list[int]) -> tuple[bytes, bytes]:
    """The gzip members (CSV rows, JSON rows) of the published rows at `positions`."""
    rows = _WORK["published"].iloc[positions]
    csv = io.BytesIO()
    rows.to_csv(csv, index=False, header=False, lineterminator="\n", float_format="%.6g", encoding="utf-8")
    return _gz(csv.getvalue()), _gz(exports.json_lines(rows))


def write_exports(frame: pd.DataFrame, sources: pd.Series | None, keys: list[str], data_dir: Path) -> dict[str, int]:
    """data/results.csv.gz and data/results.json.gz: a gzip member per results file, taken from the cache when
    that file's rows and the columns are unchanged, else made (in parallel). Returns counts made and reused."""
    published = exports.export_frame(frame)
    columns = list(published.columns)
    code = hashlib.sha256((_code_hash(_EXPORT_CODE) + "|".join(columns)).encode()).hexdigest()[:16]
    header = published.iloc[:0].to_csv(index=False, lineterminator="\n").encode()
    by_source: dict[int, list[int]] = {}
    for position, source in enumerate([] if sources is None else sources.tolist()):
        by_source.setdefault(int(source), []).append(position)
    members: dict[int, Any] = {}
    for index, positions in by_source.items():
        member_key = hashlib.sha256(f"{keys[index]}|{code}|{len(positions)}".encode()).hexdigest()[:32]
        members[index] = (member_key, _read_cached(cache_dir() / "exports" / f"{member_key}.pickle")
                          if keys[index] else None)
    todo = [i for i, (_, cached) in members.items() if cached is None]
    _WORK["published"] = published
    try:
        made = _pool_map(_members, [by_source[i] for i in todo])
    finally:
        _WORK.pop("published", None)
    for index, value in zip(todo, made):
        members[index] = (members[index][0], value)
        if keys[index]:
            _write_cached(cache_dir() / "exports" / f"{members[index][0]}.pickle", value)
    parts: dict[str, list[bytes]] = {"csv": [_gz(header)], "json": [_gz(b"[")]}
    for n, index in enumerate(sorted(members)):
        csv_member, json_member = members[index][1]
        parts["csv"].append(csv_member)
        parts["json"] += [_gz(b",\n" if n else b"\n"), json_member]
    parts["json"].append(_gz(b"\n]\n"))
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, chunks in (("results.csv.gz", parts["csv"]), ("results.json.gz", parts["json"])):
        with open(data_dir / name, "wb") as handle:
            handle.writelines(chunks)
    return {"made": len(todo), "reused": len(members) - len(todo)}


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)

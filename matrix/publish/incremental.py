"""What a site build keeps between builds, so a new run costs only its own records.

- **Rows per results file** (`load`): each *.jsonl file's records flattened into rows (`aggregate.raw_frame`, the
  costly part of aggregation: JSON, validation, signatures) are pickled under the cache folder, keyed by the file's
  path, size and modification time and by the code that reads them. A rebuild reads only new or changed files; the
  frames are concatenated and finished (`aggregate.finish`: duplicates, sort) as one.
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
import os
import pickle
from pathlib import Path
from typing import Any

import pandas as pd

from matrix.measure import records as records_io
from matrix.measure.records import RecordProblem
from matrix.publish import aggregate, exports

ROOT = Path(__file__).resolve().parents[2]
_READER_CODE = [ROOT / "matrix" / "publish" / "aggregate.py", ROOT / "matrix" / "measure" / "records.py",
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


def load(paths: list[Path], problems: list[RecordProblem]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The tidy frame of every record in `paths` (`aggregate.finish`, with a `_source` column: the index of the
    file in `paths`), its own problems (duplicates, timestamps) and each file's cache key. Unreadable files and bad
    lines are appended to `problems`. Counts of files read and reused go to STATS."""
    code = _code_hash(_READER_CODE)
    classify, find_warnings = aggregate._signature_functions()
    shared: dict[str, str] = {}
    frames, keys = [], []
    STATS.update(read=0, cached=0)
    for index, path in enumerate(paths):
        try:
            key = file_key(path, code)
        except OSError as exc:
            problems.append(RecordProblem(str(path), f"cannot be read ({exc.strerror or exc}); skipped"))
            keys.append("")
            continue
        cached = _read_cached(cache_dir() / "rows" / f"{key}.pickle")
        if cached is None:
            found: list[records_io.Record] = []
            bad: list[RecordProblem] = []
            try:
                for item in records_io.iter_file(path, shared):
                    (bad if isinstance(item, RecordProblem) else found).append(item)  # type: ignore[arg-type]
            except OSError as exc:
                problems.append(RecordProblem(str(path), f"cannot be read ({exc.strerror or exc}); skipped"))
                keys.append("")
                continue
            cached = (aggregate.raw_frame(found, classify, find_warnings), [(b.where, b.what) for b in bad])
            _write_cached(cache_dir() / "rows" / f"{key}.pickle", cached)
            STATS["read"] += 1
        else:
            STATS["cached"] += 1
        frame, bad_lines = cached
        problems.extend(RecordProblem(where, what) for where, what in bad_lines)
        if len(frame):
            frames.append(frame.assign(_source=index))
        keys.append(key)
    whole = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    frame, own = aggregate.finish(whole)
    return frame, own, keys


STATS: dict[str, int] = {"read": 0, "cached": 0}


def write_exports(frame: pd.DataFrame, sources: pd.Series, keys: list[str], data_dir: Path) -> dict[str, int]:
    """data/results.csv.gz and data/results.json.gz: a gzip member per results file, taken from the cache when
    that file's rows and the columns are unchanged. Returns counts of members made and reused."""
    published = exports.export_frame(frame)
    columns = list(published.columns)
    code = hashlib.sha256((_code_hash(_EXPORT_CODE) + "|".join(columns)).encode()).hexdigest()[:16]
    header = published.iloc[:0].to_csv(index=False, lineterminator="\n").encode()
    parts: dict[str, list[bytes]] = {"csv": [_gz(header)], "json": [_gz(b"[")]}
    counts = {"made": 0, "reused": 0}
    first = True
    positions = pd.Series(range(len(sources)), index=sources.to_numpy()).groupby(level=0).agg(list) \
        if len(sources) else pd.Series(dtype=object)
    for index, key in enumerate(keys):
        if index not in positions.index:
            continue
        rows = published.iloc[positions[index]]
        member_key = hashlib.sha256(f"{key}|{code}|{len(rows)}".encode()).hexdigest()[:32]
        cached = _read_cached(cache_dir() / "exports" / f"{member_key}.pickle") if key else None
        if cached is None:
            csv = io.BytesIO()
            rows.to_csv(csv, index=False, header=False, lineterminator="\n", float_format="%.6g", encoding="utf-8")
            json_text = exports.json_lines(rows)
            cached = (_gz(csv.getvalue()), _gz(json_text))
            if key:
                _write_cached(cache_dir() / "exports" / f"{member_key}.pickle", cached)
            counts["made"] += 1
        else:
            counts["reused"] += 1
        parts["csv"].append(cached[0])
        parts["json"] += [_gz(b"\n" if first else b",\n"), cached[1]]
        first = False
    parts["json"].append(_gz(b"\n]\n"))
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, members in (("results.csv.gz", parts["csv"]), ("results.json.gz", parts["json"])):
        with open(data_dir / name, "wb") as handle:
            handle.writelines(members)
    return counts


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)

"""Records -> the tidy frame, in two steps a site build can cache between: `raw_frame` (one row per record of a
results file, as read: the costly part, cached per file by `incremental`) and `finish` (rows of every file:
columns in order, duplicates counted once, time parsed, sorted). `aggregate.tidy` is the two together."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from matrix.measure.records import Record
from matrix.publish.aggregate import BASE_COLUMNS, KEY, record_row


def _columns(rows: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows -> a list per column (NaN where a row lacks the key, as for a list of dicts), as the rows stream in."""
    columns: dict[str, list[Any]] = {}
    count = 0
    for count, row in enumerate(rows, start=1):
        for key, value in row.items():
            column = columns.setdefault(key, [])
            if len(column) < count - 1:
                column.extend([float("nan")] * (count - 1 - len(column)))
            column.append(value)
    for column in columns.values():
        column.extend([float("nan")] * (count - len(column)))
    return columns


def raw_frame(records: Iterable[Record], classify: Callable[[Record], str | None] | None = None,
              find_warnings: Callable[[str], list[str]] | None = None) -> pd.DataFrame:
    """One row per record, as read (not yet deduplicated or sorted): what a site build caches per results file."""
    return pd.DataFrame(_columns(record_row(r, classify, find_warnings) for r in records))


def finish(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`tidy` of flattened rows (`raw_frame`s, concatenated); a `_source` column, if any, is kept (last)."""
    problems: list[str] = []
    if frame.empty:
        frame = pd.DataFrame(columns=BASE_COLUMNS + ["_order"])
    for column in BASE_COLUMNS:
        if column not in frame:
            frame[column] = float("nan") if column.startswith(("time_", "mem_")) or column == "budget_gib" else ""
    internal = ["_order"] + (["_source"] if "_source" in frame else [])
    frame = frame[BASE_COLUMNS + sorted(set(frame.columns) - set(BASE_COLUMNS) - set(internal)) + internal]
    duplicates = frame.duplicated("_order")
    if duplicates.any():
        problems.append(f"{int(duplicates.sum())} exact duplicate record(s) counted once")
        frame = frame[~duplicates]
    stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    for _, bad in frame[stamps.isna()].iterrows():
        problems.append(f"record {bad['run_id']} {bad['recipe']}/{bad['shape']} in {bad['cell_path']}: "
                        f"timestamp {bad['timestamp']!r} is not ISO 8601; sorted as oldest")
    frame = frame.assign(time=stamps, date=stamps.dt.strftime("%Y-%m-%d").fillna(""))
    frame = frame.sort_values(KEY + ["time", "run_id", "_order"], na_position="first", kind="mergesort")
    return frame.drop(columns="_order").reset_index(drop=True), problems

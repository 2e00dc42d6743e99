"""The data exports under /data/: the tidy records as CSV and JSON (texts capped), and the cell verdicts.

Pure over an `Aggregate`; the site writes the bytes. Findings' own exports are `findings.exports`.
"""

from __future__ import annotations

import io
import json

import pandas as pd

from matrix.measure import records as records_io
from matrix import urls
from matrix.publish.aggregate import VERDICTS, Aggregate

EXPORT_TEXT_LIMIT = 2000  # characters of an error message or stderr tail in the exports (the records keep 8,000)


def export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The tidy frame as published: no internal columns, timestamps as recorded, texts cut (head and tail)."""
    out = frame.drop(columns=["time"], errors="ignore")
    for column in ("error_message", "stderr_tail"):
        out[column] = [records_io.head_and_tail(t, EXPORT_TEXT_LIMIT) if isinstance(t, str) else t
                       for t in out[column]]
    return out


def json_lines(frame: pd.DataFrame, chunk: int = 1000) -> bytes:
    """The frame's rows as JSON objects, one per line, separated by commas (the inside of a JSON array), a chunk of
    rows at a time into one buffer (no copy at the end)."""
    out = io.BytesIO()
    for start in range(0, len(frame), chunk):
        text = frame.iloc[start:start + chunk].to_json(orient="records", lines=True, double_precision=10)
        out.write((("," if start else "") + ("\n" if start else "") + text.rstrip("\n").replace("\n", ",\n")).encode())
    return out.getvalue()


def _json_rows(frame: pd.DataFrame) -> bytes:
    """The frame as a JSON array, a record per line."""
    return b"[\n" + json_lines(frame) + b"\n]\n" if len(frame) else b"[\n]\n"


def matrix_json(agg: Aggregate) -> bytes:
    """data/matrix.json: one verdict per cell, with its page's URL."""
    cells = [dict(row, fixes=row["fixes"].split(), shapes=row["shapes"].split(), url=urls.absolute(row["cell_path"]))
             for row in agg.verdicts.to_dict(orient="records")]
    matrix = {"schema": 1, "cells": cells, "verdicts": list(VERDICTS)}
    return (json.dumps(matrix, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n").encode()


def exports(agg: Aggregate) -> dict[str, bytes]:
    """results.csv, results.json (a tidy record per line) and matrix.json of `agg`, uncompressed. The site
    publishes the first two gzipped, a member per results file (matrix/publish/incremental.py)."""
    tidy_frame = export_frame(agg.frame)
    csv = io.BytesIO()  # written in chunks of rows, no whole-file string
    tidy_frame.to_csv(csv, index=False, lineterminator="\n", float_format="%.6g", encoding="utf-8")
    return {"results.csv": csv.getvalue(), "results.json": _json_rows(tidy_frame), "matrix.json": matrix_json(agg)}

"""Records: schema validation, tolerant reading (file:line problems), and appends that survive a torn line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix.measure import records
from matrix.measure.records import RecordProblem, Record

FIXTURES = Path(__file__).parent / "fixtures"


def good() -> dict:
    return json.loads((FIXTURES / "records.jsonl").read_text().splitlines()[1])


def test_fixture_records_parse():
    items = list(records.iter_file(FIXTURES / "records.jsonl"))
    assert items and all(isinstance(i, Record) for i in items)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(outcome="maybe"), "'outcome' is 'maybe', allowed: pass, fail"),
    (lambda d: d.pop("recipe"), "missing key(s) recipe"),
    (lambda d: d.update(runner="h100"), "'runner' must be an object"),
    (lambda d: d.update(schema=99), "record has schema 99"),
    (lambda d: d.update(budget_gib="8"), "'budget_gib' must be a number or null"),
    (lambda d: d.update(exit_code=True), "'exit_code' must be an integer or null"),
])
def test_bad_records_name_the_problem(change, message):
    data = good()
    change(data)
    with pytest.raises(RecordProblem) as info:
        records.from_dict(data, "r.jsonl:7")
    assert str(info.value).startswith("r.jsonl:7: ") and message in str(info.value)


def test_reading_reports_bad_lines_with_file_and_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "run.jsonl"
    line = json.dumps(good())
    path.write_bytes(b"\n".join([line.encode(), b"{not json", b"\xff\xfe", line.encode(), line[:50].encode()]))
    items = list(records.iter_file(path))
    recs = [i for i in items if isinstance(i, Record)]
    problems = [i for i in items if isinstance(i, RecordProblem)]
    assert len(recs) == 2
    assert [p.where for p in problems] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "not valid JSON" in problems[0].what and "not UTF-8" in problems[1].what
    assert "interrupted" in problems[2].what


def test_append_after_a_torn_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "run.jsonl"
    records.append_json(path, good())
    with open(path, "ab") as handle:  # a writer killed mid-line
        handle.write(b'{"run_id": "torn')
    records.append_json(path, good())
    items = list(records.iter_file(path))
    assert [type(i).__name__ for i in items] == ["Record", "RecordProblem", "Record"]


def test_missing_results_dir_is_a_user_error(tmp_path):
    from matrix.errors import ResultsError

    with pytest.raises(ResultsError, match="results directory does not exist"):
        records.read_results(tmp_path / "nope")

"""Property-based tests (hypothesis): arbitrary input never crashes the record parser, the signature classifier
or the aggregation, and aggregation depends neither on file or line order nor on being run twice."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matrix.publish import aggregate, render
from matrix.measure import records
from matrix.diagnose import signatures
from matrix.measure.records import Record, RecordProblem

FIXTURES = Path(__file__).parent / "fixtures"
REAL = [records.from_dict(json.loads(line)) for line in (FIXTURES / "records.jsonl").read_text().splitlines()]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
FIELDS = ["run_id", "timestamp", "runner", "requested", "versions", "recipe", "shape", "outcome", "budget_gib",
          "stage", "error_type", "error_message", "stderr_tail", "exit_code", "timings_s", "schema"]


@given(st.text(max_size=400))
def test_parse_line_accepts_or_reports_any_text(line):
    try:
        assert isinstance(records.parse_line(line, "f.jsonl:1"), Record)
    except RecordProblem as problem:
        assert problem.where == "f.jsonl:1"


@given(st.sampled_from(REAL), st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
def test_from_dict_never_crashes_on_damaged_records(record, damage):
    data = {**json.loads(json.dumps(record.__dict__)), **damage}
    try:
        records.from_dict(data, "x:1")
    except RecordProblem:
        pass


@given(st.binary(max_size=600))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_iter_file_reports_any_bytes_per_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("r") / "x.jsonl"
    path.write_bytes(raw)
    for item in records.iter_file(path):
        assert isinstance(item, (Record, RecordProblem))


@given(st.text(max_size=300), st.text(max_size=2000), st.text(max_size=2000),
       st.sampled_from(["fail", "crash", "timeout"]))
def test_classify_always_names_a_known_signature(error_type, message, stderr, outcome):
    slug = signatures.classify(error_type, message, stderr, outcome)
    assert slug in signatures.default_catalogue() or slug in ("crash", "timeout", "unclassified")


@given(st.text(max_size=3000))
def test_rendered_untrusted_text_has_no_live_markup(text):
    html = str(render.pre(text))
    inner = html.split(">", 2)[-1].rsplit("</code>", 1)[0]
    assert "<" not in inner and "\x1b" not in inner


def _fingerprint(agg: aggregate.Aggregate):
    latest = agg.latest.sort_values(aggregate.KEY).reset_index(drop=True)
    verdicts = agg.verdicts.sort_values(aggregate.CELL).reset_index(drop=True)
    effects = agg.effects.sort_values("recipe").reset_index(drop=True)
    return (latest[aggregate.KEY + ["outcome", "run_id", "runs", "flaky"]].to_json(),
            verdicts[aggregate.CELL + ["verdict"]].to_json(), effects.to_json())


@given(st.lists(st.sampled_from(REAL), min_size=1, max_size=30), st.randoms(use_true_random=False))
@settings(max_examples=25, deadline=None)
def test_aggregation_ignores_order_and_is_idempotent(picked, rnd):
    shuffled = list(picked)
    rnd.shuffle(shuffled)
    one = aggregate.aggregate(picked)
    assert _fingerprint(one) == _fingerprint(aggregate.aggregate(shuffled))
    assert _fingerprint(one) == _fingerprint(aggregate.aggregate(picked + picked))  # a file read twice


def test_a_one_megabyte_message_is_capped_not_fatal():
    huge = REAL[0].__dict__ | {"error_message": "<b>x</b>" * 131072, "stderr_tail": "\x1b[31m" + "y" * 10**6}
    agg = aggregate.aggregate([records.from_dict(huge)])
    assert len(agg.latest) == 1
    assert len(str(render.pre(huge["error_message"]))) < 100_000

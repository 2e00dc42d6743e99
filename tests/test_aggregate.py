"""Aggregation on the fixture records: verdicts, fix effects, history, malformed lines, order independence."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from matrix.publish import aggregate, exports
from matrix.errors import ResultsError
from matrix.measure.records import Record, from_dict

FIXTURE = Path(__file__).parent / "fixtures" / "records.jsonl"
LINES = FIXTURE.read_text(encoding="utf-8").splitlines()


def verdict_of(agg: aggregate.Aggregate, runner: str, bnb: str) -> dict:
    rows = agg.verdicts[(agg.verdicts["runner"] == runner) & (agg.verdicts["bnb"] == bnb)]
    assert len(rows) == 1
    return rows.iloc[0].to_dict()


def base_record(**changes) -> Record:
    """A passing CPU record from the fixtures with some fields changed."""
    return dataclasses.replace(from_dict(json.loads(LINES[1])), **changes)


def with_bnb(record: Record, bnb: str) -> Record:
    return dataclasses.replace(record, requested=dict(record.requested, bnb=bnb))


# ------------------------------------------------------------------------------------------ on the fixtures
def test_tidy_frame_has_one_row_per_record(agg):
    assert len(agg.frame) == len(LINES) == 25
    for column in ("runner", "runner_kind", "runner_gpu_name", "torch", "bnb", "transformers", "recipe", "shape",
                   "budget_gib", "outcome", "stage", "error_message", "time_load_s", "mem_gpu_load_peak_mib",
                   "check_rel_error", "signature", "version_bitsandbytes"):
        assert column in agg.frame.columns
    gpu = agg.frame[agg.frame["runner"] == "h100-sm90"]
    assert set(gpu["runner_gpu_name"]) == {"NVIDIA H100 80GB HBM3"}
    assert set(gpu["runner_kind"]) == {"gpu"}
    assert agg.problems == ()


def test_verdicts(agg):
    assert verdict_of(agg, "cpu-x86_64", "0.50.2")["verdict"] == "works"
    assert verdict_of(agg, "cpu-x86_64", "0.45.5")["verdict"] == "fails"
    fixed = verdict_of(agg, "cpu-x86_64", "0.47.0")
    assert fixed["verdict"] == "works-with-fix" and fixed["fixes"] == "seed-fix"
    assert verdict_of(agg, "h100-sm90", "0.45.5")["verdict"] == "fails"
    # The budgeted 8b plain failure does not count: whole-card runs decide the verdict.
    assert verdict_of(agg, "h100-sm90", "0.50.2")["verdict"] == "works"
    assert len(agg.verdicts) == 5


def test_verdict_carries_when_and_where(agg):
    cell = verdict_of(agg, "cpu-x86_64", "0.47.0")
    assert cell["first_seen"] == "2026-11-01" and cell["last_measured"] == "2026-11-20"
    assert cell["cell_path"] == "cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.47.0/transformers-5.24.0/"
    assert cell["runner_cpu_model"].startswith("Intel")


def test_history_and_flaky(agg):
    latest = agg.latest
    row = latest[(latest["bnb"] == "0.47.0") & (latest["recipe"] == "seed-fix")].iloc[0]
    assert row["outcome"] == "pass"  # the 2026-11-20 run wins over the 2026-11-01 failure
    assert (row["runs"], row["first_seen"], row["last_seen"]) == (2, "2026-11-01", "2026-11-20")
    assert row["outcomes"] == "fail pass" and bool(row["flaky"]) is True
    assert int(latest["flaky"].sum()) == 1
    assert len(latest) == 24


def test_fix_effects(agg):
    effects = agg.effects.set_index("recipe")
    seed = effects.loc["seed-fix"]
    assert (seed["cells"], seed["pairs"]) == (5, 6)
    assert (seed["fail->pass"], seed["pass->fail"], seed["both-pass"], seed["both-fail"]) == (2, 0, 2, 2)
    nf4 = effects.loc["nf4-bf16"]
    assert (nf4["fail->pass"], nf4["pass->fail"], nf4["both-pass"], nf4["both-fail"]) == (1, 0, 2, 3)
    offload = effects.loc["cpu-offload"]  # skipped on the CPU cells except where it timed out
    assert (offload["cells"], offload["pairs"], offload["fail->pass"], offload["both-fail"]) == (3, 4, 1, 2)
    assert "plain" not in effects.index
    assert seed["median_delta_load_peak_mib"] == 0.0  # fixture memory is the same for every recipe


def test_fix_pairs_deltas_only_where_both_passed(agg):
    pairs = agg.pairs
    assert pairs[pairs["change"] != "both-pass"]["delta_load_s"].isna().all()
    assert pairs[pairs["change"] == "both-pass"]["delta_load_s"].notna().all()


def test_signatures_classified(agg):
    pytest.importorskip("matrix.diagnose.signatures")
    failed = agg.frame[agg.frame["outcome"].isin(aggregate.FAILED)]
    assert (failed["signature"] != "").all()
    row = failed[(failed["bnb"] == "0.45.5") & (failed["runner"] == "cpu-x86_64")].iloc[0]
    assert row["signature"] == "bnb-too-old"
    assert (agg.frame[agg.frame["outcome"] == "pass"]["signature"] == "").all()


def test_exports(agg):
    files = exports.exports(agg)
    csv = pd.read_csv(__import__("io").BytesIO(files["results.csv"]))
    assert len(csv) == 25 and "time" not in csv.columns
    records = json.loads(files["results.json"])
    assert len(records) == 25 and records[0]["budget_gib"] is None
    matrix = json.loads(files["matrix.json"])
    cells = {(c["runner"], c["bnb"]): c for c in matrix["cells"]}
    cell = cells[("cpu-x86_64", "0.47.0")]
    assert cell["verdict"] == "works-with-fix" and cell["fixes"] == ["seed-fix"]
    assert cell["url"].endswith("/cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.47.0/transformers-5.24.0/")


# --------------------------------------------------------------------------------------- order and problems
def test_order_independent_and_idempotent(tmp_path):
    shuffled = LINES[:]
    random.Random(7).shuffle(shuffled)
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "z.jsonl").write_text("\n".join(shuffled[:9]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(shuffled[9:]) + "\n")
    one = aggregate.load(tmp_path, warn=False)
    original = tmp_path.parent / (tmp_path.name + "-orig")
    original.mkdir()
    (original / "records.jsonl").write_text("\n".join(LINES) + "\n")
    two = aggregate.load(original, warn=False)
    for name in ("frame", "latest", "verdicts", "pairs", "effects"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name))
    assert exports.exports(one) == exports.exports(two) == exports.exports(aggregate.load(original, warn=False))


def test_malformed_lines_reported_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(LINES[0] + "\n{not json\n" + json.dumps({"run_id": "x"}) + "\n" + LINES[1] + "\n" + LINES[2][:40])
    agg = aggregate.load(tmp_path)
    assert len(agg.frame) == 2  # the good lines are kept
    where = [p.split(": ")[0] for p in agg.problems]
    assert where == [f"{bad}:2", f"{bad}:3", f"{bad}:5"]
    assert "missing key" in agg.problems[1]
    err = capsys.readouterr().err
    assert f"warning: {bad}:2" in err and f"{bad}:5" in err


def test_missing_results_dir_is_a_results_error(tmp_path):
    with pytest.raises(ResultsError) as info:
        aggregate.load(tmp_path / "nope")
    assert "does not exist" in str(info.value) and "\n" not in str(info.value)


def test_empty_results_give_empty_aggregates(tmp_path):
    agg = aggregate.load(tmp_path, warn=False)
    assert agg.frame.empty and agg.verdicts.empty and agg.pairs.empty
    assert json.loads(exports.exports(agg)["matrix.json"])["cells"] == []


def test_duplicate_records_count_once():
    record = base_record()
    agg = aggregate.aggregate([record, record], use_signatures=False)
    assert len(agg.frame) == 1 and agg.latest.iloc[0]["runs"] == 1
    assert agg.problems == ("1 exact duplicate record(s) counted once",)


def test_latest_breaks_timestamp_ties_deterministically():
    a = base_record(outcome="fail", stage="load", error_message="a")
    b = base_record(outcome="pass", run_id="20261120T1000Z-fixture-b")
    for order in ([a, b], [b, a]):
        latest = aggregate.aggregate(order, use_signatures=False).latest
        assert latest.iloc[0]["run_id"] == "20261120T1000Z-fixture-b"
        assert bool(latest.iloc[0]["flaky"]) is True


# ---------------------------------------------------------------------------------------------- verdict rules
def test_verdict_not_measured_when_everything_skipped():
    skip = base_record(outcome="skip", skip_reason="needs a GPU", recipe="cpu-offload")
    agg = aggregate.aggregate([skip], use_signatures=False)
    assert agg.verdicts.iloc[0]["verdict"] == "not-measured"


def test_verdict_fails_when_one_shape_has_no_passing_recipe():
    tiny_ok = base_record()
    big_plain = base_record(shape="1b", outcome="fail", stage="load")
    big_seed = base_record(shape="1b", recipe="seed-fix", outcome="crash", stage="process")
    agg = aggregate.aggregate([tiny_ok, big_plain, big_seed], use_signatures=False)
    assert agg.verdicts.iloc[0]["verdict"] == "fails"


def test_verdict_names_the_recipes_that_fix_every_failing_shape():
    records = [base_record(outcome="fail", stage="load"), base_record(shape="1b", outcome="fail", stage="load"),
               base_record(recipe="seed-fix"), base_record(recipe="seed-fix", shape="1b"),
               base_record(recipe="nf4-bf16"), base_record(recipe="nf4-bf16", shape="1b", outcome="fail")]
    agg = aggregate.aggregate(records, use_signatures=False)
    assert (agg.verdicts.iloc[0]["verdict"], agg.verdicts.iloc[0]["fixes"]) == ("works-with-fix", "seed-fix")
    # When no single recipe fixes every shape, every recipe that fixed some shape is named.
    records[3] = base_record(recipe="seed-fix", shape="1b", outcome="fail")
    records[5] = base_record(recipe="nf4-bf16", shape="1b")
    records[2] = base_record(recipe="seed-fix")
    records[4] = base_record(recipe="nf4-bf16", outcome="fail")
    agg = aggregate.aggregate(records, use_signatures=False)
    assert (agg.verdicts.iloc[0]["verdict"], agg.verdicts.iloc[0]["fixes"]) == ("works-with-fix", "nf4-bf16 seed-fix")


def test_cells_sort_by_version_not_text():
    records = [with_bnb(base_record(), v) for v in ("0.10.0", "0.9.1", "0.50.2")]
    agg = aggregate.aggregate(records, use_signatures=False)
    assert list(agg.verdicts["bnb"]) == ["0.9.1", "0.10.0", "0.50.2"]


def test_bad_timestamp_is_reported_not_fatal():
    agg = aggregate.aggregate([base_record(timestamp="yesterday")], use_signatures=False)
    assert len(agg.frame) == 1 and "not ISO 8601" in agg.problems[0]


def test_data_page_documents_every_column(agg):
    text = (Path(__file__).parent.parent / "site" / "data.md").read_text(encoding="utf-8")
    prefixes = ("runner_", "time_", "mem_", "check_", "requested_", "version_")
    for column in exports.export_frame(agg.frame).columns:
        assert f"`{column}`" in text or column.startswith(prefixes), column

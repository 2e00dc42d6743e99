"""Pre-quantized checkpoints (issue 26): the recipe kind and its checks in the axes, the layout read from saved
safetensors headers, the planning of write and read jobs over a cache of writer folders, records with
`saved_with` kept out of the on-the-fly frames, and the writer x reader grid with its way out."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from matrix.errors import AxesError
from matrix.measure import jobs, records
from matrix.measure.axes import load_axes, parse_axes
from matrix.measure.prequant import layout, shape_root, writer_key
from matrix.measure.readback import PREQUANT_VERSION, plan, saved_with
from matrix.publish import aggregate, prequant


def write_safetensors(path: Path, names: dict[str, str]) -> None:
    """A real .safetensors file (header + zero-filled data) with one 4-byte tensor per name."""
    header, offset = {}, 0
    for name, dtype in names.items():
        header[name] = {"dtype": dtype, "shape": [4 if dtype == "U8" else 1], "data_offsets": [offset, offset + 4]}
        offset += 4
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_layout_is_read_from_the_safetensors_header(tmp_path: Path):
    q = "model.layers.0.self_attn.q_proj."
    write_safetensors(tmp_path / "model.safetensors", {
        q + "weight": "U8", q + "weight.absmax": "U8", q + "weight.nested_absmax": "F32",
        q + "weight.quant_state.bitsandbytes__nf4": "U8", "model.layers.0.self_attn.k_proj.weight": "U8"})
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {
        "quant_method": "bitsandbytes", "bnb_4bit_quant_type": "nf4", "_load_in_4bit": True}}))
    found = layout(tmp_path)
    assert found["tensors"] == ["weight:U8", "weight.absmax:U8", "weight.nested_absmax:F32",
                                "weight.quant_state.bitsandbytes__nf4:U8"]
    assert found["quant_config"] == ["bnb_4bit_quant_type", "quant_method"]  # private keys left out
    assert found["quant_method"] == "bitsandbytes"


def test_the_prequantized_kind_is_checked_in_the_axes(tmp_path: Path):
    axes = load_axes()
    assert {axes.recipes[r].kind for r in axes.profiles["prequant-cpu"].recipes} == {"prequantized"}
    assert axes.profiles["prequant-cpu"].shapes == ("tiny",) and axes.profiles["prequant-cuda"].shapes == ("1b",)
    base = {"torch_builds": {"t": {"version": "2.13.0", "variant": "cpu"}},
            "shapes": {"tiny": {"hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
                                "num_attention_heads": 1, "num_key_value_heads": 1, "vocab_size": 8}},
            "recipes": {"plain": {"title": "p", "description": "d", "bnb_config": {"load_in_4bit": True}},
                        "pq": {"title": "q", "description": "d", "kind": "prequantized",
                               "bnb_config": {"load_in_4bit": True}}}}
    profile = {"torch": ["t"], "bitsandbytes": ["0.50.2"], "transformers": ["5.24.0"], "shapes": ["tiny"]}
    parse_axes({**base, "profiles": {"p": {**profile, "recipes": ["pq"]}}}, tmp_path)
    with pytest.raises(AxesError, match="mixes prequantized recipes"):
        parse_axes({**base, "profiles": {"p": {**profile, "recipes": ["plain", "pq"]}}}, tmp_path)
    bad = json.loads(json.dumps(base))
    bad["recipes"]["pq"]["from_pretrained"] = {"device_map": "auto"}
    with pytest.raises(AxesError, match="saves and reloads"):
        parse_axes({**bad, "profiles": {"p": {**profile, "recipes": ["pq"]}}}, tmp_path)
    bad = json.loads(json.dumps(base))
    bad["recipes"]["pq"]["kind"] = "saved"
    with pytest.raises(AxesError, match="kind"):
        parse_axes({**bad, "profiles": {"p": {**profile, "recipes": ["pq"]}}}, tmp_path)


def test_adding_the_kind_left_on_the_fly_fingerprints_as_they_were():
    # a committed record of probe v3 (results/20261125T160651Z-cpu-x86_64-0e26.jsonl): same fingerprint today
    axes = load_axes()
    assert jobs.fingerprint(axes, "cpu-x86_64", "2.13.0+cpu", "0.50.2", "5.24.0", "online", "plain", "tiny",
                            None) == "7b38fcb69d2cd1bc7946"


def test_plan_writes_missing_folders_and_reads_every_writer(tmp_path: Path):
    axes = load_axes()
    profile = axes.profiles["prequant-cpu"]
    me = {"torch": "2.13.0+cpu", "bnb": "0.50.2", "transformers": "5.24.0"}
    other = {"torch": "2.13.0+cpu", "bnb": "0.47.0", "transformers": "4.57.6"}
    shape = {"name": "tiny", "config": axes.shapes["tiny"].config}
    first = plan(axes, profile, "cpu-x86_64", me, tmp_path, "both", set())
    assert [j["role"] for j in first] == ["write"] * len(profile.recipes)  # nothing written yet: nothing to read
    assert first[0]["saved_with"] == saved_with(me, axes.recipes[first[0]["recipe"]].bnb_config)
    for who in (me, other):  # two writers' folders, as a completed write leaves them
        for recipe in profile.recipes:
            folder = shape_root(tmp_path, shape) / writer_key(who) / recipe
            folder.mkdir(parents=True)
            (folder / "writer.json").write_text(json.dumps(
                {"saved_with": saved_with(who, axes.recipes[recipe].bnb_config)}))
    reads = plan(axes, profile, "cpu-x86_64", me, tmp_path, "both", set())
    assert all(j["role"] == "read" for j in reads) and len(reads) == 2 * len(profile.recipes)
    assert {j["saved_with"]["bitsandbytes"] for j in reads} == {"0.50.2", "0.47.0"}
    assert len({j["fingerprint"] for j in reads}) == len(reads)
    done = {j["fingerprint"] for j in reads if j["saved_with"]["bitsandbytes"] == "0.47.0"}
    assert {j["saved_with"]["bitsandbytes"] for j in plan(axes, profile, "cpu-x86_64", me, tmp_path, "read",
                                                          done)} == {"0.50.2"}
    assert plan(axes, profile, "cpu-x86_64", me, tmp_path, "write", set()) == []
    assert len(plan(axes, profile, "cpu-x86_64", me, tmp_path, "write", set(), force=True)) == len(profile.recipes)


def record(reader: tuple[str, str], writer: tuple[str, str], outcome: str = "pass", role: str = "read",
           recipe: str = "prequant-nf4", layers_bit_exact: int = 14, **fields) -> records.Record:
    req = {"torch": "2.13.0+cpu", "bnb": reader[0], "transformers": reader[1]}
    base = records.base("20261207T000000Z-cpu-x86_64-0000", **req, probe_version=PREQUANT_VERSION)
    who = saved_with({"torch": "2.13.0+cpu", "bnb": writer[0], "transformers": writer[1]},
                     {"bnb_4bit_quant_type": "nf4"})
    checks = {"role": role, "layout": ["weight:U8", "weight.absmax:F32"], "logits_rel_diff": 0.001,
              "layers_bit_exact": layers_bit_exact, "layers_compared": 14}
    data = records.draft(base, {"slug": "cpu-x86_64", "kind": "cpu"}, recipe, "tiny", outcome=outcome,
                         saved_with=who, checks=checks, **fields)
    return records.from_dict(data)


def test_records_with_saved_with_stay_out_of_the_on_the_fly_frames():
    plain = records.from_dict(records.draft(records.base("r1", torch="2.13.0+cpu", bnb="0.50.2",
                                                         transformers="5.24.0"),
                                            {"slug": "cpu-x86_64"}, "plain", "tiny", outcome="pass"))
    pre = record(("0.50.2", "5.24.0"), ("0.47.0", "4.57.6"))
    agg = aggregate.aggregate([plain, pre], use_signatures=False, baseline="plain")
    assert list(agg.frame["recipe"]) == ["plain"] and agg.prequant == (pre,)
    again = records.parse_line(pre.to_json(), "x:1")  # saved_with survives the round trip through a results file
    assert again.saved_with["bitsandbytes"] == "0.47.0" and again.saved_with["quant_type"] == "nf4"


def test_grid_names_failures_and_the_measured_way_out():
    old, new, newer = ("0.47.0", "4.57.6"), ("0.50.2", "5.24.0"), ("0.49.2", "5.24.0")
    recs = [record(new, old, outcome="fail", stage="check", error_type="AssertionError",
                   error_message="logits differ from the writer's by 0.9 (limit 0.01)"),
            record(new, new), record(new, newer), record(old, old), record(newer, old, layers_bit_exact=0),
            record(old, old, role="write"), record(new, new, role="write")]
    context = prequant.index_context(recs)
    (grid,) = context["grids"]
    assert [r["label"] for r in grid["readers"]] == [prequant.release(*p) for p in (old, newer, new)]
    (failure,) = grid["failures"]
    assert failure["writer"] == prequant.release(*old) and failure["reader"] == prequant.release(*new)
    assert failure["resave"] == prequant.release(*newer)  # same transformers, nearest bitsandbytes
    assert failure["load"] == prequant.release(*newer)
    assert grid["passed"] == 4 and grid["reads"] == 5
    assert grid["not_exact"] == ["bnb 0.49.2 reading bnb 0.47.0"]  # passed, but rounded differently
    assert grid["families"] == [["0.47.0", "0.50.2"], ["0.49.2"]]
    pages = dict(prequant.reader_contexts(recs))
    page = pages[prequant.reader_path(*new)]
    assert page["passed"] == 2 and page["total"] == 3
    assert context["layouts"][0]["tensors"] == ["weight:U8", "weight.absmax:F32"]

"""`explain`: whole pasted tracebacks from real issue threads, exit codes and the JSON shape."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from matrix import urls
from matrix.explain import explain, run_explain
from matrix.signatures import default_catalogue

TRACEBACKS = Path(__file__).parent / "fixtures" / "tracebacks"

# file -> (expected slug, source thread, held out).
# Held out: fetched only after the catalogue's patterns were frozen, and no pattern or priority was changed for
# them afterwards (only prose and fix text has changed since); they test the catalogue on text it was not written
# against. The others were known while writing the patterns.
FIXTURES = {
    "bnb-1467-nonetype-libcusparse.txt":
        ("cuda-runtime-missing", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1467", False),
    "bnb-397-torch-not-compiled-with-cuda.txt":
        ("no-gpu", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/397", False),
    "bnb-881-dispatched-wrapped.txt":
        ("dispatched-to-cpu", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/881", False),
    "bnb-382-named-symbol.txt":
        ("named-symbol-not-found", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/382", False),
    "transformers-38717-to-not-supported.txt":
        ("to-not-supported", "https://github.com/huggingface/transformers/issues/38717", True),
    "bnb-1848-configured-binary-cuda131.txt":
        ("native-library-missing", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1848", True),
    "unsloth-2340-nonetype-cdequantize.txt":
        ("native-library-missing", "https://github.com/unslothai/unsloth/issues/2340", True),
    "bnb-829-libcusparse-legacy-setup.txt":
        ("cuda-runtime-missing", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/829", True),
}


def test_every_fixture_file_is_listed() -> None:
    assert sorted(p.name for p in TRACEBACKS.glob("*.txt")) == sorted(FIXTURES)
    assert sum(held for _, _, held in FIXTURES.values()) >= 2


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_pasted_traceback(name: str) -> None:
    slug, source, _ = FIXTURES[name]
    sig = explain((TRACEBACKS / name).read_text(encoding="utf-8"))
    assert sig is not None and sig.slug == slug, source


def test_root_cause_above_a_generic_last_line() -> None:
    # the last line alone is the umbrella error; the paste carries the cause
    text = (TRACEBACKS / "bnb-1467-nonetype-libcusparse.txt").read_text(encoding="utf-8")
    last = text.strip().splitlines()[-1]
    assert explain(last).slug == "cuda-setup-failed"
    assert explain(text).slug == "cuda-runtime-missing"


def test_single_messages_and_warnings() -> None:
    assert explain("RuntimeError: quant_type must be nf4 on CPU, got fp4").slug == "cpu-needs-nf4"
    assert explain("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB").slug == "cuda-oom"
    warning = ("UserWarning: Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
               "(default). This will lead to slow inference.")
    assert explain(warning).slug == "slow-fp32-compute"
    assert explain("") is None
    assert explain("hello world") is None
    assert explain(b"Segmentation fault (core dumped)").slug == "crash"  # type: ignore[arg-type]


def test_run_explain_text() -> None:
    out = io.StringIO()
    code = run_explain("ValueError: Some modules are dispatched on the CPU or the disk.", as_json=False, out=out)
    text = out.getvalue()
    sig = default_catalogue()["dispatched-to-cpu"]
    assert code == 0
    assert sig.title in text
    assert sig.cause.split(". ")[0].split()[0] in text
    assert sig.fixes[0].title in text
    assert "llm_int8_enable_fp32_cpu_offload=True" in text  # the first fix's code
    assert urls.absolute(urls.error_path("dispatched-to-cpu")) in text


def test_run_explain_json_shape() -> None:
    out = io.StringIO()
    assert run_explain("Error named symbol not found at line 116 in file ops.cu", as_json=True, out=out) == 0
    payload = json.loads(out.getvalue())
    assert list(payload) == ["slug", "title", "url"]
    assert payload == {"slug": "named-symbol-not-found",
                       "title": default_catalogue()["named-symbol-not-found"].title,
                       "url": urls.absolute("errors/named-symbol-not-found/")}


def test_run_explain_no_match() -> None:
    out = io.StringIO()
    assert run_explain("KeyError: 'foo'", as_json=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines == [f"no known signature; see {urls.absolute('errors/unclassified/')}"]
    out = io.StringIO()
    assert run_explain("KeyError: 'foo'", as_json=True, out=out) == 1
    assert json.loads(out.getvalue())["slug"] == "unclassified"


def test_run_explain_uses_the_configured_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNB_MATRIX_SITE_URL", "https://example.org/m")
    out = io.StringIO()
    run_explain("No module named 'bitsandbytes'", as_json=True, out=out)
    assert json.loads(out.getvalue())["url"] == "https://example.org/m/errors/bnb-not-installed/"


def test_run_explain_survives_hostile_paste() -> None:
    out = io.StringIO()
    paste = "\x1b[31m\ud800" + "<script>" * 10_000 + "\nAttributeError: 'NoneType' object has no attribute 'cuda'"
    assert run_explain(paste, as_json=False, out=out) == 1
    assert "<script>" not in out.getvalue()  # the paste itself is never echoed

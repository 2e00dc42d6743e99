"""`explain`: whole pasted tracebacks from real issue threads, exit codes and the JSON shape."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from matrix import urls
from matrix.diagnose.explain import explain, run_explain
from matrix.diagnose.signatures import default_catalogue

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
    # Held out, second batch: pastes from issue threads (as stored, trimmed where the thread was), checked against
    # the catalogue before any pattern was touched for them, and all matched as they were.
    # transformers' 4-bit quantizer on an M1 (MPS, no CUDA); the paste has no "SomeError:" line at all
    "omost-22-no-gpu-mps.txt":
        ("no-gpu", "https://github.com/huchenlei/ComfyUI_omost/issues/22", True),
    # a Mac: bitsandbytes' CPU-library warning and NoneType error above it are symptoms; no CUDA GPU is the cause
    "magicquill-15-mac-cpu-library.txt":
        ("no-gpu", "https://github.com/robbyant-research/MagicQuill/issues/15", True),
    # a Colab/IPython traceback (arrows, frame counts, the NOTE footer after the exception line)
    "finetune-deepseek-1-ipython-bnb-too-old.txt":
        ("bnb-too-old", "https://github.com/AIAnytime/Fine-Tune-DeepSeek/issues/1", True),
    # the last exception is accelerate's CalledProcessError; the cause was printed by the child above it
    "kohya-490-no-kernel-image-then-calledprocesserror.txt":
        ("no-kernel-image", "https://github.com/bmaltais/kohya_ss/issues/490", True),
    # two tracebacks interleaved on one terminal; the OOM line sits in the middle
    "llamatuner-91-interleaved-oom.txt":
        ("cuda-oom", "https://github.com/jianzhnie/LLamaTuner/issues/91", True),
}


def slug_of(text: str) -> str | None:
    """The slug of the cause explain() picks, None when it picks none."""
    found = explain(text)
    return found.slug if found else None


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
    assert slug_of(last) == "cuda-setup-failed"
    assert slug_of(text) == "cuda-runtime-missing"


def test_single_messages_and_warnings() -> None:
    assert slug_of("RuntimeError: quant_type must be nf4 on CPU, got fp4") == "cpu-needs-nf4"
    assert slug_of("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB") == "cuda-oom"
    warning = ("UserWarning: Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
               "(default). This will lead to slow inference.")
    assert slug_of(warning) == "slow-fp32-compute"
    assert explain("") is None
    assert explain("hello world") is None
    assert slug_of(b"Segmentation fault (core dumped)") == "crash"  # type: ignore[arg-type]


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


ROOT = Path(__file__).parent.parent


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BNB_MATRIX_SITE_URL", None)
    return subprocess.run([sys.executable, "-m", "matrix", "explain", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)


@pytest.mark.parametrize("args,slug,code", [
    (["--json", "CUDA VERSION MISMATCH"], "native-library-missing", 0),
    (["--json", "quant_type must be nf4 on CPU, got fp4"], "cpu-needs-nf4", 0),
    (["--json", "RuntimeError:", "No", "compatible", "CUDA", "binary", "found", "at", "/x/libbitsandbytes_cuda130.so"],
     "native-library-missing", 0),
    (["--json", "KeyError: 'foo'"], "unclassified", 1),
])
def test_cli_explain_json_and_exit_codes(args: list[str], slug: str, code: int) -> None:
    proc = _cli(*args)
    assert proc.returncode == code, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload == {"slug": slug, "title": default_catalogue()[slug].title,
                       "url": urls.DEFAULT_SITE_URL + f"errors/{slug}/"}


def test_cli_explain_reads_a_whole_traceback_from_stdin() -> None:
    paste = (TRACEBACKS / "bnb-1848-configured-binary-cuda131.txt").read_text(encoding="utf-8")
    proc = _cli(stdin=paste)
    assert proc.returncode == 0, proc.stderr
    assert "[native-library-missing]" in proc.stdout
    assert proc.stdout.rstrip().endswith(urls.DEFAULT_SITE_URL + "errors/native-library-missing/")
    assert _cli(stdin="nothing to see here\n").returncode == 1


def test_run_explain_survives_a_closed_pipe() -> None:
    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    assert run_explain("CUDA VERSION MISMATCH", as_json=False, out=Closed()) == 0  # `| head` must not traceback
    assert run_explain("hello", as_json=True, out=Closed()) == 1


def test_markdown_reply_names_every_cause_with_cause_fix_and_link() -> None:
    paste = ("Could not find the bitsandbytes CUDA binary at "
             "PosixPath('/venv/bitsandbytes/libbitsandbytes_cuda130.so')\n"
             "AttributeError: /venv/bitsandbytes/libbitsandbytes_cpu.so: undefined symbol: "
             "cquantize_blockwise_fp16_nf4")
    out = io.StringIO()
    assert run_explain(paste, as_json=False, out=out, markdown=True) == 0
    text = out.getvalue()
    catalogue = default_catalogue()
    first, second = catalogue["native-library-missing"], catalogue["compiled-without-gpu"]
    assert text.index(f"[{first.title}]({urls.absolute(urls.error_path(first.slug))})") < \
        text.index(f"[{second.title}]({urls.absolute(urls.error_path(second.slug))})")
    assert text.count("**Cause:**") == 2 and "**Fix:** " + first.fixes[0].title in text
    assert text.count("```") % 2 == 0  # every code block closed


def test_markdown_reply_for_one_cause_and_for_none(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "matrix", "explain", "--markdown"], input=(
        TRACEBACKS / "bnb-382-named-symbol.txt").read_text(), capture_output=True, text=True,
        cwd=Path(__file__).parent.parent, timeout=60)
    sig = default_catalogue()["named-symbol-not-found"]
    assert proc.returncode == 0 and proc.stdout.startswith(f"This looks like **{sig.title}**.")
    assert urls.absolute(urls.error_path(sig.slug)) in proc.stdout and "**Cause:**" in proc.stdout
    out = io.StringIO()
    assert run_explain("hello", as_json=False, out=out, markdown=True) == 1
    assert urls.absolute(urls.error_path("unclassified")) in out.getvalue()

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
    assert list(payload) == ["slug", "title", "url", "specific"]
    assert payload == {"slug": "named-symbol-not-found",
                       "title": default_catalogue()["named-symbol-not-found"].title,
                       "url": urls.absolute("errors/named-symbol-not-found/"), "specific": True}


def test_json_says_when_the_answer_is_only_a_fallback() -> None:
    def payload(text: str) -> dict:
        out = io.StringIO()
        run_explain(text, as_json=True, out=out)
        return json.loads(out.getvalue())

    umbrella = "RuntimeError: CUDA Setup failed despite GPU being available. Please run python -m bitsandbytes"
    assert payload(umbrella)["slug"] == "cuda-setup-failed" and payload(umbrella)["specific"] is False
    assert payload("Segmentation fault")["specific"] is False
    assert payload("KeyError: 'foo'")["specific"] is False  # unclassified: nothing specific either
    glibc = ("Could not load bitsandbytes native library: /lib64/libc.so.6: version `GLIBC_2.34' not found (required "
             "by /venv/bitsandbytes/libbitsandbytes_cuda128.so)\n" + umbrella)
    both = payload(glibc)
    assert both["slug"] == "glibc-too-old" and both["specific"] is True
    assert both["also"] == [{"slug": "cuda-setup-failed", "title": default_catalogue()["cuda-setup-failed"].title,
                             "url": urls.absolute("errors/cuda-setup-failed/"), "specific": False}]


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
                       "url": urls.DEFAULT_SITE_URL + f"errors/{slug}/", "specific": slug != "unclassified"}


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


# ---------------------------------------------------------------------------------------------------------
# platform evidence (issue 23): the paste's paths decide between a generic symptom and its real cause


@pytest.mark.parametrize("paste,slug", [
    # a Linux-only release on Windows: the libcuda search fails, but Windows is the cause
    ("bin D:\\venv\\lib\\site-packages\\bitsandbytes\\libbitsandbytes_cpu.so\n"
     "CUDA SETUP: WARNING! libcuda.so not found! Do you have a CUDA driver installed?", "windows-unsupported"),
    # the same search on Linux (a container build, WSL): the driver library is the cause
    ("CUDA SETUP: WARNING! libcuda.so not found! Do you have a CUDA driver installed?", "libcuda-not-found"),
    # a Mac: "requires the latest bitsandbytes" is what transformers says when there is no CUDA GPU
    ("/Users/dd/ComfyUI/models/LLM\n!!! Exception during processing !!! Using `bitsandbytes` 4-bit quantization "
     "requires the latest version of bitsandbytes: `pip install -U bitsandbytes`", "no-gpu"),
    ("I am on M2 Max Chip MacOS\nThe installed version of bitsandbytes was compiled without GPU support.", "no-gpu"),
    # Windows does not override a specific cause: a community Windows build with no kernel for the GPU
    ("Error no kernel image is available for execution on the device at line 167 in file "
     "D:\\ai\\tool\\bitsandbytes\\csrc\\ops.cu", "no-kernel-image"),
    # notebooks on Windows link their frames as file:///C:/...; that is not a Mac's /Users
    ("File [c:\\Users\\k\\venv\\Lib\\site-packages\\bitsandbytes\\cextension.py](file:///C:/Users/k/venv/Lib/"
     "site-packages/bitsandbytes/cextension.py)\nThe installed version of bitsandbytes was compiled without GPU "
     "support.", "compiled-without-gpu"),
])
def test_platform_evidence_picks_the_cause(paste: str, slug: str) -> None:
    assert slug_of(paste) == slug


def test_platform_of() -> None:
    from matrix.diagnose.platform import platform_of

    assert platform_of("C:\\Users\\me\\venv") == "windows"
    assert platform_of("argument of type 'WindowsPath' is not iterable") == "windows"
    assert platform_of("/Users/me/venv/lib/python3.11") == "mac"
    assert platform_of("file:///C:/Users/me/x.py") == "windows"
    assert platform_of("/home/me/venv") == "" and platform_of(None) == ""  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# fixes by measured pass rate (issue 22 item 6)


def _record(recipe: str, outcome: str, shape: str = "s", error: str = "", when: str = "2026-01-01T00:00:00Z"):
    from matrix.measure.records import Record

    return Record(run_id="r", timestamp=when, runner={"slug": "t4"}, requested={"torch": "2.6", "bnb": "0.45",
                  "transformers": "4.5"}, versions={"bitsandbytes": "0.45"}, recipe=recipe, shape=shape,
                  outcome=outcome, stage="" if outcome == "pass" else "load", error_type="ValueError" if error else "",
                  error_message=error)


def test_fixes_are_ranked_by_measured_pass_rate() -> None:
    from matrix.diagnose.fixrates import ranked_fixes

    sig = default_catalogue()["dispatched-to-cpu"]
    error = "Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM"
    measured = [f for f in sig.fixes if f.recipe]
    assert measured, "dispatched-to-cpu has a fix measured as a recipe"
    recipe = measured[0].recipe
    records = [_record("plain", "fail", "a", error), _record("plain", "fail", "b", error),
               _record(recipe, "pass", "a"), _record(recipe, "fail", "b", "x"),
               # an older record of the same situation does not count: the latest one does
               _record(recipe, "fail", "a", "x", when="2025-01-01T00:00:00Z")]
    ranked = ranked_fixes(sig, records)
    assert ranked[0].fix.recipe == recipe and (ranked[0].passed, ranked[0].situations) == (1, 2)
    # measured and never passing where the error occurred: after the unmeasured ones
    never = ranked_fixes(sig, records[:2] + [_record(recipe, "fail", "a", "x"), _record(recipe, "fail", "b", "x")])
    assert never[-1].fix.recipe == recipe and never[-1].measured and never[-1].passed == 0
    assert "passed in 1 of 2 cases" in ranked[0].describe()
    assert all(r.describe() == "not measured" for r in ranked[1:] if not r.fix.recipe)
    assert [r.fix for r in ranked_fixes(sig, [])] == list(sig.fixes)  # nothing measured: file order
    assert ranked_fixes(sig, [])[0].describe().startswith(("not measured", "not measured where"))


def test_text_lists_every_fix_with_what_was_measured(tmp_path: Path) -> None:
    out = io.StringIO()
    paste = "ValueError: Blockwise quantization only supports 16/32-bit floats, but got torch.uint8"
    assert run_explain(paste, as_json=False, out=out, results=tmp_path) == 0  # an empty results folder
    text = out.getvalue()
    sig = default_catalogue()["requantize-uint8"]
    assert all(fix.title in text for fix in sig.fixes)
    assert text.count("not measured") == len(sig.fixes)

"""`check`: the setup reader (flags and pastes), the engine over the committed facts, the outputs and the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from matrix.check import render
from matrix.check.engine import check
from matrix.check.facts import load_facts, to_js
from matrix.check.paste import read_paste
from matrix.check.setup import Setup, arch_of, from_flags
from matrix.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
DOCTOR = ROOT / "site" / "doctor.py"


@pytest.fixture(scope="module")
def facts():
    return load_facts()


def ask(facts, **flags):
    env = flags.pop("env", None)
    return check(from_flags(**flags, env=env), facts)


# ------------------------------------------------------------------------------------------------ reading a setup
@pytest.mark.parametrize("text,arch", [("sm_86", "sm_86"), ("sm86", "sm_86"), ("8.6", "sm_86"), ("12.0", "sm_120"),
                                       ("compute_120", "sm_120"), ("(7, 5)", "sm_75"), ("T4", None)])
def test_arch_of(text, arch):
    assert arch_of(text) == arch


@pytest.mark.parametrize("flags,where", [({"os": "macos"}, "--os"), ({"machine": "ppc64le"}, "--machine"),
                                        ({"torch": "latest"}, "--torch"), ({"bnb": "new!"}, "--bnb"),
                                        ({"glibc": "two"}, "--glibc"), ({"env": ["BNB_CUDA_VERSION"]}, "--env")])
def test_bad_flags_say_where_and_how(flags, where):
    with pytest.raises(UserError) as err:
        from_flags(**flags)
    assert err.value.where.startswith(where) and err.value.hint


NEW_STYLE = """=================== bitsandbytes v0.45.5 ===================
Platform: Linux-5.15.0-1057-azure-x86_64-with-glibc2.35
  libc: glibc-2.35
Python: 3.11.11
PyTorch: 2.6.0+cu124
  CUDA: 12.4
  HIP: N/A
Related packages:
  accelerate: 1.3.0
  transformers: 4.48.3
PyTorch settings found: CUDA_VERSION=124, Highest Compute Capability: (7, 5).
SUCCESS!
"""
NVIDIA_SMI = """| NVIDIA-SMI 570.153.02             Driver Version: 570.153.02     CUDA Version: 12.8     |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 5090        Off |   00000000:41:00.0  On |                  N/A |
"""
COLLECT_ENV = """PyTorch version: 2.4.0+cu121
CUDA used to build PyTorch: 12.1
OS: Ubuntu 20.04.6 LTS (x86_64)
Libc version: glibc-2.31
GPU models and configuration: GPU 0: Tesla V100-SXM2-16GB
Nvidia driver version: 535.54.03
"""


def test_paste_new_style_python_m_bitsandbytes():
    s = read_paste(NEW_STYLE)
    assert (s.bnb, s.torch, s.torch_cuda, s.compute_capability, s.glibc, s.os, s.transformers) == \
        ("0.45.5", "2.6.0+cu124", "12.4", "7.5", "2.35", "linux", "4.48.3")


def test_paste_nvidia_smi_and_pip_freeze():
    s = read_paste(NVIDIA_SMI + "\ntorch==2.7.0+cu128\nbitsandbytes==0.45.3\ntransformers==4.51.0\n")
    assert (s.gpu, s.driver, s.torch, s.bnb, s.transformers) == \
        ("NVIDIA GeForce RTX 5090", "570.153.02", "2.7.0+cu128", "0.45.3", "4.51.0")


def test_paste_collect_env_and_pip_list():
    s = read_paste(COLLECT_ENV + "bitsandbytes              0.43.3\n")
    assert (s.torch, s.torch_cuda, s.glibc, s.gpu, s.driver, s.bnb) == \
        ("2.4.0+cu121", "12.1", "2.31", "Tesla V100-SXM2-16GB", "535.54.03", "0.43.3")


def test_paste_old_style_cuda_setup():
    s = read_paste("CUDA SETUP: Highest compute capability among GPUs detected: 7.0\nCUDA SETUP: Detected CUDA "
                   "version 113\nexport BNB_CUDA_VERSION=118\n/home/u/site-packages/bitsandbytes/x.so")
    assert (s.compute_capability, s.env, s.os) == ("7.0", (("BNB_CUDA_VERSION", "118"),), "linux")


def test_doctor_runs_without_bnb_matrix_and_check_reads_its_block(tmp_path, facts):
    """site/doctor.py with an isolated Python in an empty folder (no matrix importable) prints a block check reads."""
    out = subprocess.run([sys.executable, "-I", str(DOCTOR)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.startswith("--- bnb-matrix doctor 1 ---") and "os: linux" in out
    s = read_paste(out)
    assert s.os == "linux" and s.machine in ("x86_64", "aarch64")
    block = ("--- bnb-matrix doctor 1 ---\nos: linux\nmachine: x86_64\nglibc: 2.35\ngpu: Tesla T4\n"
             "compute_capability: 7.5\ntorch: 2.6.0+cu124\ntorch_cuda: 12.4\ntorch_archs: sm_50 sm_60 sm_70 sm_75 "
             "sm_80 sm_86 sm_90\nbitsandbytes: 0.45.5\ntransformers: 4.48.3\n--- end ---\n")
    v = check(read_paste(block), facts)
    assert v.verdict == "works" and v.resolved["arch"] == "sm_75" and not any("OS" in a for a in v.assumed)


# ------------------------------------------------------------------------------------------------ the engine
def test_t4_torch_26_bnb_0455_works_predicted(facts):
    v = ask(facts, gpu="T4", torch="2.6", bnb="0.45.5")
    assert (v.verdict, v.source) == ("works", "predicted")
    assert (v.resolved["torch"], v.resolved["cuda"], v.resolved["library"]) == \
        ("2.6.0", "12.4", "libbitsandbytes_cuda124")
    assert any("PyPI's default wheel" in a and "CUDA 12.4" in a for a in v.assumed)


def test_rtx_5090_torch_215_which_bnb(facts):
    v = ask(facts, gpu="RTX 5090", torch="2.15")
    assert v.verdict == "works" and v.resolved["arch"] == "sm_120"
    assert any("bitsandbytes not given" in a for a in v.assumed)
    assert v.facts[-1].startswith("bitsandbytes releases that work here: ") and v.resolved["bnb"] in v.facts[-1]


def test_v100_cu128_bnb_0461_fails_with_way_out(facts):
    v = ask(facts, gpu="V100", torch="2.8.0+cu128", bnb="0.46.1")
    assert (v.verdict, v.source) == ("fails", "predicted")
    changes = {w["change"]: w for w in v.way_out}
    assert changes["bitsandbytes"]["command"].startswith("pip install bitsandbytes==")
    assert "--index-url https://download.pytorch.org/whl/cu" in changes["torch"]["command"]
    again = ask(facts, gpu="V100", torch="2.8.0+cu128", bnb=changes["bitsandbytes"]["to"])
    assert again.verdict == "works"  # the way out really works plainly


def test_missing_library_gives_the_override_fix(facts):
    v = ask(facts, gpu="RTX 4090", torch="2.8.0+cu129", bnb="0.45.5", os="windows")
    assert v.verdict == "works-with-fix" and "BNB_CUDA_VERSION=" in v.fix
    assert [w["change"] for w in v.way_out][:2] == ["bitsandbytes", "torch"]  # plain passes beside the fix


def test_cpu_torch_and_old_driver_fail(facts):
    assert ask(facts, gpu="A100", torch="2.6.0+cpu", bnb="0.45.5").verdict == "fails"
    v = ask(facts, gpu="A100", torch="2.11.0", bnb="0.48.0", driver="550.54.15")
    assert v.verdict == "fails" and "driver 550.54.15" in v.facts[-1]


def test_platform_without_a_wheel_and_jetson(facts):
    assert ask(facts, gpu="A100", torch="2.6.0", bnb="0.43.0", machine="aarch64").verdict == "fails"
    v = ask(facts, gpu="Jetson AGX Orin", torch="2.5.0a0+872d972e41.nv24.08", bnb="0.46.1")
    assert (v.verdict, v.source) == ("fails", "reported") and "github.com" in v.facts[-1]


def test_unknown_says_what_is_missing(facts):
    assert ask(facts, gpu="T4", torch="2.0.1", bnb="0.39.1").verdict == "unknown"
    v = ask(facts, torch="2.6.0", bnb="0.45.5")
    assert v.verdict in VERDICT_OR_UNKNOWN and (v.verdict != "unknown" or "GPU not given" in v.facts[0])


VERDICT_OR_UNKNOWN = ("works", "works-with-fix", "fails", "unknown")


def test_measured_cell_wins_and_is_linked(facts):
    key = "sm_90|2.6.0+cu124|0.45.5"
    mine = {**facts, "measured": {key: [["4.48.3", "works-with-fix", "cells/h100/x/"]]}}
    v = check(Setup(gpu="H100", torch="2.6.0+cu124", bnb="0.45.5", transformers="4.48.3"), mine)
    assert (v.verdict, v.source, v.cell) == ("works-with-fix", "measured", "cells/h100/x/")
    assert "cells/h100/x/" in render.as_text(v)


# ------------------------------------------------------------------------------------------------ outputs
def test_outputs_carry_the_verdict_and_a_reproducing_link(facts):
    v = ask(facts, gpu="T4", torch="2.6.0", bnb="0.45.5", env=["BNB_CUDA_VERSION=124"])
    data = json.loads(render.as_json(v))
    assert data["verdict"] == "works" and "check/?gpu=T4&torch=2.6.0&bnb=0.45.5&env=BNB_CUDA_VERSION%3D124" in \
        data["link"]
    assert render.as_markdown(v).startswith("**works**")


def test_data_file_is_compact_javascript(facts):
    js = to_js(facts).decode()
    assert js.startswith("window.BNB_CHECK_FACTS=") and len(js) < 150_000
    assert json.loads(js.removeprefix("window.BNB_CHECK_FACTS=").rstrip().rstrip(";"))["schema"] == 2


def run_cli(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "matrix", "check", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_exit_codes_follow_explain():
    ok = run_cli("--gpu", "T4", "--torch", "2.6.0", "--bnb", "0.45.5", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict"] == "works"
    unknown = run_cli("--gpu", "T4", "--torch", "2.0.1", "--bnb", "0.39.1")
    assert unknown.returncode == 1 and unknown.stdout.startswith("UNKNOWN")
    bad = run_cli("--os", "macos")
    assert bad.returncode == 2 and "--os macos" in bad.stderr and "Traceback" not in bad.stderr
    pasted = run_cli(stdin=NEW_STYLE)
    assert pasted.returncode == 0 and pasted.stdout.startswith("WORKS")


def test_reported_answers_where_the_binaries_cannot(facts):
    """0.39.1 picks its library by the system's CUDA runtime: the binaries cannot answer, an issue-thread report can."""
    report = ["sm_61", "0.39.1", "", "linux-x86_64", "works", "https://github.com/o/r/issues/1", "it loaded"]
    mine = {**facts, "reports": [report]}
    v = check(Setup(gpu="GTX 1080 Ti", bnb="0.39.1"), mine)
    assert (v.verdict, v.source) == ("works", "reported") and "https://github.com/o/r/issues/1" in v.facts[-1]
    assert check(Setup(gpu="T4", bnb="0.39.1"), mine).verdict == "unknown"  # another GPU: the report says nothing


def test_without_a_gpu_one_answer_only_where_every_gpu_agrees(facts):
    v = ask(facts, torch="2.7.0", bnb="0.45.5", glibc="2.31")
    assert v.verdict == "fails" and "GLIBC_2.34" in " ".join(v.facts)
    assert any(a.startswith("GPU not given: the answer is the same") for a in v.assumed)
    assert v.way_out[0]["change"] == "bitsandbytes"  # one that works on every GPU of the answer


def test_plain_torch_on_windows_says_pypi_is_cpu_only(facts):
    v = ask(facts, gpu="RTX 4090", torch="2.6.0", bnb="0.45.5", os="windows")
    assert v.verdict == "unknown" and "CPU-only" in v.facts[-1]
    assert ask(facts, gpu="RTX 4090", torch="2.6.0+cu124", bnb="0.45.5", os="windows").verdict == "works"


def test_releases_that_pick_by_the_system_cuda_runtime(facts):
    """0.39-0.40 load the library of the CUDA runtime found on the system: unknown without it, answered with it."""
    assert ask(facts, gpu="V100", torch="2.3.1", bnb="0.39.1").verdict == "unknown"
    s = read_paste("CUDA SETUP: CUDA runtime path found: /usr/local/cuda/lib64/libcudart.so\n"
                   "CUDA SETUP: Highest compute capability among GPUs detected: 7.0\n"
                   "CUDA SETUP: Detected CUDA version 122\ntorch==2.3.1\nbitsandbytes==0.39.1\n")
    assert (s.cuda_runtime, s.compute_capability) == ("12.2", "7.0")
    v = check(s, facts)
    assert v.verdict == "fails" and "the system's CUDA runtime 12.2" in " ".join(v.facts)


def test_way_out_by_transformers_from_measured_cells(facts):
    key = "sm_90|2.6.0+cu124|0.45.5"
    rows = [["4.40.0", "fails", "cells/a/", ""], ["4.48.3", "works", "cells/b/", ""]]
    v = check(Setup(gpu="H100", torch="2.6.0", bnb="0.45.5", transformers="4.40.0"), {**facts, "measured": {key: rows}})
    assert (v.verdict, v.source, v.cell) == ("fails", "measured", "cells/a/")
    assert {"change": "transformers", "to": "4.48.3"}.items() <= v.way_out[-1].items()

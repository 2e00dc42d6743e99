"""The two fatbin readers on bytes from a real bitsandbytes library, and the cached wheel readings."""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

import pytest

from matrix.predict import binaries, loader_rules, wheels
from matrix.predict.fatbin import HEADER, FatbinError, read_fatbin, read_payloads

# .nv_fatbin of libbitsandbytes_cuda130.so (bitsandbytes 0.50.2, aarch64), cut to its sm_90 and sm_120 entries
# by scripts/slice_fatbin.py (entries byte for byte, only the container's size rewritten).
FIXTURE = Path(__file__).parent / "fixtures" / "binaries" / "bnb-0.50.2-aarch64-cuda130-sm90-sm120.fatbin"
CACHE = wheels.CACHE_DIR


def cached(release: str, platform: str = "linux-x86_64") -> dict:
    found = [w for w in wheels.load_cache(CACHE) if w["release"] == release and w["platform"] == platform]
    assert found, f"no committed reading of bitsandbytes {release} {platform} in {CACHE}"
    return found[0]


def test_own_reader_lists_the_real_entries() -> None:
    reading = read_fatbin(FIXTURE.read_bytes())
    assert reading.sass == {"sm_90", "sm_120"}
    assert reading.ptx == set()
    assert (reading.containers, reading.entries) == (1, 2)


def test_own_reader_skips_zero_padding_between_containers() -> None:
    data = FIXTURE.read_bytes()
    reading = read_fatbin(data + b"\0" * 8 + data)
    assert reading.containers == 2 and reading.sass == {"sm_90", "sm_120"}


@pytest.mark.parametrize("cut", [HEADER.size + 10, 300_000])
def test_own_reader_refuses_truncated_bytes(cut: int) -> None:
    with pytest.raises(FatbinError):
        read_fatbin(FIXTURE.read_bytes()[:cut])


def test_cuobjdump_agrees_with_own_reader_on_the_fixture(tmp_path: Path) -> None:
    tool = binaries.find_cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    nvidia = binaries.run_cuobjdump(tool, FIXTURE)
    assert nvidia["error"] is None
    assert nvidia["sass"] == ["sm_90", "sm_120"]
    library = {"fatbin": {**read_fatbin(FIXTURE.read_bytes()).as_dict(), "error": None}, "cuobjdump": nvidia}
    assert binaries.readers_agree(library)
    assert binaries.coverage(library)["sass"] == {"sm_90": "compiled", "sm_120": "compiled"}


def test_parse_cuobjdump_output() -> None:
    text = ("ELF file    1: libbitsandbytes_cuda124.1.sm_50.cubin\nELF file    2: x.2.sm_90a.cubin\n"
            "PTX file    1: x.1.sm_75.ptx\nsomething else\n")
    assert binaries.parse_cuobjdump(text) == {"sass": ["sm_50", "sm_90a"], "ptx": ["compute_75"]}


def test_disagreement_or_reader_error_is_unknown_never_not_compiled() -> None:
    disputed = {"fatbin": {"sass": ["sm_80", "sm_90"], "ptx": [], "error": None},
                "cuobjdump": {"sass": ["sm_80"], "ptx": [], "error": None}}
    assert binaries.coverage(disputed)["sass"] == {"sm_80": "compiled", "sm_90": "unknown"}
    failed = {"fatbin": {"sass": ["sm_80"], "ptx": [], "error": None},
              "cuobjdump": {"sass": [], "ptx": [], "error": "exit 1: Invalid ELF"}}
    assert binaries.coverage(failed)["sass"] == {"sm_80": "unknown"}
    assert not binaries.readers_agree(failed)


def test_library_names() -> None:
    assert wheels.library_facts("bitsandbytes/libbitsandbytes_cuda124_nocublaslt.so") == {
        "backend": "cuda", "nocublaslt": True, "cuda": "12.4"}
    assert wheels.library_facts("bitsandbytes/libbitsandbytes_cuda130.dll")["cuda"] == "13.0"
    assert wheels.library_facts("bitsandbytes/libbitsandbytes_rocm64.so") == {
        "backend": "rocm", "nocublaslt": False, "rocm": "64"}
    assert wheels.library_facts("bitsandbytes/libbitsandbytes_cpu.so")["backend"] == "cpu"
    assert wheels.platform_of("bitsandbytes-0.50.2-py3-none-win_amd64.whl") == "windows-x86_64"
    assert wheels.platform_of("bitsandbytes-0.50.2-py3-none-macosx_14_0_arm64.whl") is None


def test_list_wheels_from_pypi_json() -> None:
    index = {"releases": {
        "0.38.1": [{"filename": "bitsandbytes-0.38.1-py3-none-any.whl", "packagetype": "bdist_wheel"}],
        "0.42.0": [{"filename": "bitsandbytes-0.42.0-py3-none-any.whl", "packagetype": "bdist_wheel",
                    "url": "/packages/y.whl", "digests": {"sha256": "cd"}, "size": 1}],
        "0.45.5": [{"filename": "bitsandbytes-0.45.5-py3-none-manylinux_2_24_x86_64.whl", "packagetype": "bdist_wheel",
                    "url": "/packages/x.whl", "digests": {"sha256": "ab"}, "size": 1}],
        "0.51.0rc1": [{"filename": "bitsandbytes-0.51.0rc1-py3-none-win_amd64.whl", "packagetype": "bdist_wheel"}]}}
    listed = wheels.list_wheels(index)
    # 0.39-0.42 ship one py3-none-any wheel of Linux x86-64 libraries; 0.38 is before FIRST_RELEASE
    assert [(w["release"], w["platform"]) for w in listed] == [("0.42.0", "linux-x86_64"), ("0.45.5", "linux-x86_64")]
    assert listed[1]["url"] == "https://pypi.org/packages/x.whl"


def test_committed_readings_cover_every_release_and_read_the_cuda_libraries() -> None:
    readings = wheels.load_cache(CACHE)
    releases = {w["release"] for w in readings}
    assert {"0.43.0", "0.45.5", "0.48.2", "0.50.2"} <= releases
    cuda130 = next(lib for lib in cached("0.50.2")["libraries"] if lib["name"] == "libbitsandbytes_cuda130.so")
    assert binaries.readers_agree(cuda130)
    assert "sm_90" in binaries.coverage(cuda130)["sass"]
    assert any(n.startswith(("libcudart.so.13", "libcublas")) for n in cuda130["needed"])


def test_loader_rules_read_from_each_release_source() -> None:
    old, new = loader_rules.rule(cached("0.45.5")["loader"]), loader_rules.rule(cached("0.50.2")["loader"])
    assert (old["missing"], old["selection"], old["override"]) == ("cpu-fallback", "exact", "re.sub")
    assert old["missing_at"].startswith("bitsandbytes/cextension.py:")
    assert (new["missing"], new["selection"]) == ("error-on-use", "nearest-same-major")
    assert loader_rules.library_name(old, "13.0", ["12.8"])[0] == "libbitsandbytes_cuda130"
    assert loader_rules.library_name(new, "12.9", ["12.8", "13.0"])[0] == "libbitsandbytes_cuda128"
    assert loader_rules.library_name(new, "14.0", ["12.8", "13.0"])[0] == "libbitsandbytes_cuda140"


def test_refresh_downloads_nothing_already_read(tmp_path: Path) -> None:
    index = {"releases": {"0.50.2": [{"filename": "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl",
                                      "packagetype": "bdist_wheel", "url": "https://invalid.example/x.whl",
                                      "digests": {"sha256": "f" * 64}, "size": 1}]}}
    (tmp_path / f"{'f' * 64}.json").write_text("{}")
    stats = wheels.refresh(tmp_path, index=index, log=lambda line: None)
    assert (stats["cached"], stats["read"], stats["bytes"]) == (1, 0, 0)


def test_torch_arch_string() -> None:
    from matrix.predict.torch_builds import arch_list

    blob = b"\0junk sm_5\0sm_75 sm_80 sm_86 sm_90 sm_100 sm_120\0more"
    assert arch_list(blob) == ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert arch_list(blob + b"\0sm_50 sm_60 sm_70\0") is None  # two candidates: unknown, not a guess


# --- The relocatable fatbin, the payload reading and the glibc floors (issue 21) ---------------------------------
# All cut by scripts/slice_fatbin.py from real bitsandbytes libraries (entries byte for byte):
# __nv_relfatbin of libbitsandbytes_cuda126.so (0.45.5, x86_64), its sm_90 entries: SASS + PTX, LZ4-compressed;
# __nv_relfatbin of libbitsandbytes_cuda130.so (0.48.0, x86_64), its sm_120 entries: SASS + PTX, zstd-compressed;
# .nv_fatbin of libbitsandbytes_cuda121.so (0.39.0, x86_64), its sm_80 cubin (gzip -9 -n): cuobjdump 13.x refuses it.
RELFATBIN_LZ4 = FIXTURE.parent / "bnb-0.45.5-x86_64-cuda126-relfatbin-sm90.fatbin"
RELFATBIN_ZSTD = FIXTURE.parent / "bnb-0.48.0-x86_64-cuda130-relfatbin-sm120.fatbin"
CUDA121_GZ = FIXTURE.parent / "bnb-0.39.0-x86_64-cuda121-sm80.fatbin.gz"


def _library(section: str, header: dict, payload: dict, nvidia: dict) -> dict:
    """A cached-library record holding one section's three readings (the shape read_library writes)."""
    key = {"nv_fatbin": "fatbin", "relfatbin": "relfatbin"}[section]
    record = {key: {**header, "error": None}, "payload": {section: payload}, "cuobjdump": {}}
    record["cuobjdump" if section == "nv_fatbin" else "relfatbin_tool"] = nvidia
    if section == "relfatbin":
        record["cuobjdump"] = {"sass": [], "ptx": [], "error": None, "relfatbin": record.pop("relfatbin_tool")}
    return record


@pytest.mark.parametrize(("path", "arch"), [(RELFATBIN_LZ4, 90), (RELFATBIN_ZSTD, 120)])
def test_relocatable_ptx_is_read_from_headers_and_from_the_compressed_payloads(path: Path, arch: int) -> None:
    data = path.read_bytes()
    header = read_fatbin(data)
    assert (header.sass, header.ptx, header.compressed) == ({f"sm_{arch}"}, {f"compute_{arch}"}, 2)
    payload = read_payloads(data)
    assert (payload.sass, payload.ptx, payload.read, payload.unread) == ({f"sm_{arch}"}, {f"compute_{arch}"}, 2, {})
    library = _library("relfatbin", header.as_dict(), {**payload.as_dict(), "error": None},
                       {"sass": [], "ptx": [], "error": "cuobjdump: not installed"})
    assert binaries.coverage_by_section(library)["relfatbin"]["ptx"] == {f"compute_{arch}": "compiled"}
    assert binaries.coverage(library)["ptx"] == {f"compute_{arch}": "compiled"}  # the runtime can JIT-link it
    assert binaries.coverage(library)["sass"] == {}  # relocatable SASS is not what the runtime loads
    assert binaries.ptx_section(library, f"compute_{arch}") == "relfatbin"
    assert binaries.problem(library) is None


def test_cuobjdump_lists_the_relocatable_ptx_too() -> None:
    tool = binaries.find_cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    nvidia = binaries.run_cuobjdump(tool, RELFATBIN_LZ4)
    assert (nvidia["sass"], nvidia["ptx"], nvidia["error"]) == (["sm_90"], ["compute_90"], None)


def test_a_payload_we_cannot_decompress_is_a_typed_reason_and_stays_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as on a machine without the zstandard package
    payload = read_payloads(RELFATBIN_ZSTD.read_bytes())
    assert (payload.read, payload.unread) == (0, {"payload: zstd not installed": 2})
    library = _library("relfatbin", read_fatbin(RELFATBIN_ZSTD.read_bytes()).as_dict(),
                       {**payload.as_dict(), "error": None}, {"sass": [], "ptx": [], "error": "cuobjdump: invalid ELF"})
    assert binaries.coverage_by_section(library)["relfatbin"]["ptx"] == {"compute_120": "unknown"}
    assert binaries.problem(library) == "cuobjdump: invalid ELF; payload: zstd not installed"


def test_cuda121_cubin_cuobjdump_refuses_is_read_by_the_payload_reader(tmp_path: Path) -> None:
    data = gzip.decompress(CUDA121_GZ.read_bytes())
    assert read_fatbin(data).sass == {"sm_80"}
    payload = read_payloads(data)
    assert (payload.sass, payload.read, payload.mismatched) == ({"sm_80"}, 1, 0)
    tool = binaries.find_cuobjdump()
    nvidia = {"sass": [], "ptx": [], "error": "cuobjdump: not installed"}
    if tool is not None:
        (tmp_path / "cuda121.fatbin").write_bytes(data)
        nvidia = binaries.run_cuobjdump(tool, tmp_path / "cuda121.fatbin")
        if not nvidia["error"]:
            pytest.skip("this cuobjdump reads CUDA 12.1 cubins: the payload reading is not needed as a fallback")
        assert nvidia["error"] == "cuobjdump: invalid ELF"  # the tool's message and our tmp path are not kept
    library = _library("nv_fatbin", read_fatbin(data).as_dict(), {**payload.as_dict(), "error": None}, nvidia)
    assert binaries.coverage(library)["sass"] == {"sm_80": "compiled"}
    assert binaries.readers_agree(library)


def test_tool_reasons_never_carry_the_tools_words_or_paths() -> None:
    text = "cuobjdump fatal   : Invalid ELF in '/tmp/bnb-lib-x/bitsandbytes/libbitsandbytes_cuda121.so'"
    assert binaries.tool_reason(255, text) == "cuobjdump: invalid ELF"
    assert binaries.tool_reason(1, "cuobjdump fatal : Support for 'sm_35' has been removed. Please use CUDA toolkit "
                                   "11.8 or earlier.") == "cuobjdump: architecture no longer supported"
    assert binaries.tool_reason(3, "something new at /tmp/x") == "cuobjdump: exit 3"


def test_glibc_floor_from_the_version_needs() -> None:
    names = ["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.14", "GLIBCXX_3.4.9", "GLIBCXX_3.4.22", "CXXABI_1.3.9", "GCC_3.0"]
    assert binaries.highest_versions(names) == {"glibc": "GLIBC_2.34", "glibcxx": "GLIBCXX_3.4.22",
                                                "cxxabi": "CXXABI_1.3.9"}
    own = binaries.elf_facts(Path(sys.executable).resolve())  # a real ELF: this interpreter
    assert any(v.startswith("GLIBC_") for v in own["versions"])


def test_committed_readings_name_the_glibc_234_floor_of_0455_cuda126() -> None:
    lib = next(lib for lib in cached("0.45.5")["libraries"] if lib["name"] == "libbitsandbytes_cuda126.so")
    assert lib["glibc"] == "GLIBC_2.34"
    assert cached("0.45.5")["schema"] == wheels.SCHEMA


def test_committed_readings_find_relocatable_ptx_and_no_unknown_library() -> None:
    readings = wheels.load_cache(CACHE)
    cuda = [lib for w in readings for lib in w["libraries"] if lib["backend"] == "cuda"]
    assert {w["release"] for w in readings} >= {"0.39.0", "0.41.3", "0.42.0", "0.43.0", "0.50.2"}
    assert [lib["name"] for lib in cuda if not binaries.readers_agree(lib)] == []
    relocatable = [lib for lib in cuda if binaries.coverage_by_section(lib)["relfatbin"]["ptx"]]
    assert len(relocatable) > len(cuda) / 2
    assert not any(binaries.coverage_by_section(lib)["nv_fatbin"]["ptx"] for lib in cuda)
    refused: dict[str, set[str]] = {lib["cuobjdump"]["error"]: set() for lib in cuda if lib["cuobjdump"].get("error")}
    for lib in cuda:
        if lib["cuobjdump"].get("error"):
            refused[lib["cuobjdump"]["error"]].add(lib["cuda"])
    # cuobjdump 13.x: "Invalid ELF" on CUDA 12.0-12.2 linked cubins, "support removed" for 0.39.0's sm_35/sm_37
    assert refused == {"cuobjdump: invalid ELF": {"12.0", "12.1", "12.2"},
                       "cuobjdump: architecture no longer supported": {"11.1", "11.2", "11.3", "11.5", "11.6", "11.7"}}


def test_exports_tag_sections_and_name_glibc_without_tool_text() -> None:
    from matrix.publish import gpus

    readings = wheels.load_cache(CACHE)
    frame = gpus.binaries_frame(readings)
    ptx = frame[(frame.kind == "ptx") & (frame.status == "compiled")]
    assert set(ptx.section) == {"relfatbin"}
    row = frame[(frame.release == "0.45.5") & (frame.library == "libbitsandbytes_cuda126.so")
                & (frame.platform == "linux-x86_64")]
    assert set(row.glibc) == {"GLIBC_2.34"}
    text = gpus.binaries_csv(readings).decode() + gpus.libraries_frame(readings).to_csv()
    assert "/tmp" not in text and "fatal" not in text.lower()


def test_jit_test_output_comes_from_the_committed_sources() -> None:
    import hashlib

    folder = Path(__file__).parents[1] / "scripts" / "jit_test"
    output = (folder / "output-h100.txt").read_text()
    found = (re.fullmatch(r"([0-9a-f]{64})  (\S+)", line) for line in output.splitlines())
    sums = {match.group(2): match.group(1) for match in found if match}
    assert set(sums) == {"helper.cu", "kernel.cu", "main.cpp", "build.sh", "run.sh"}
    assert all(hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest for name, digest in sums.items())
    assert "librdc_ptx80.so: RAN first launch" in output
    assert "libsass80.so: FAILED first launch" in output and "cudaErrorNoKernelImageForDevice" in output
    assert "cudaErrorJitCompilationDisabled" in output

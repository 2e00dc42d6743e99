"""The two fatbin readers on bytes from a real bitsandbytes library, and the cached wheel readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrix.predict import binaries, loader_rules, wheels
from matrix.predict.fatbin import HEADER, FatbinError, read_fatbin

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
        "0.42.0": [{"filename": "bitsandbytes-0.42.0-py3-none-any.whl", "packagetype": "bdist_wheel"}],
        "0.45.5": [{"filename": "bitsandbytes-0.45.5-py3-none-manylinux_2_24_x86_64.whl", "packagetype": "bdist_wheel",
                    "url": "/packages/x.whl", "digests": {"sha256": "ab"}, "size": 1}],
        "0.51.0rc1": [{"filename": "bitsandbytes-0.51.0rc1-py3-none-win_amd64.whl", "packagetype": "bdist_wheel"}]}}
    listed = wheels.list_wheels(index)
    assert [(w["release"], w["platform"]) for w in listed] == [("0.45.5", "linux-x86_64")]
    assert listed[0]["url"] == "https://pypi.org/packages/x.whl"


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
    assert (old["missing"], old["selection"], old["override"]) == ("cpu-fallback", "exact", "BNB_CUDA_VERSION")
    assert old["missing_at"].startswith("bitsandbytes/cextension.py:")
    assert (new["missing"], new["selection"]) == ("error-on-use", "nearest-same-major")
    assert loader_rules.library_name(old, "13.0", ["12.8"]) == "libbitsandbytes_cuda130"
    assert loader_rules.library_name(new, "12.9", ["12.8", "13.0"]) == "libbitsandbytes_cuda128"
    assert loader_rules.library_name(new, "14.0", ["12.8", "13.0"]) == "libbitsandbytes_cuda140"


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

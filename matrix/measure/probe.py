"""The probe: runs inside one cell's venv and really loads a Llama-shaped checkpoint in 4-bit, once per recipe.

Run as `python -m matrix.measure.probe --spec SPEC.json --out OUT.jsonl` with only our package on PYTHONPATH
(`matrix.measure.jobs` does this); it imports only the stdlib and the stdlib-only modules of `matrix.measure` beside
it at module level, and torch / transformers / bitsandbytes inside functions.

How one cell is measured:
1. The parent imports torch, transformers and bitsandbytes once, with fd 2 sent to a log (bitsandbytes often
   prints the real root cause at import, before transformers re-raises something generic).
2. The checkpoint for the shape is made once per machine in a separate process and cached (random weights,
   fp16 safetensors via save_pretrained).
3. Each recipe (x VRAM budget) runs in its own process with a timeout. Where it is safe (no CUDA context in the
   parent, no recipe environment to apply before import) the parent forks, so the import is paid once per cell;
   otherwise a fresh interpreter is spawned. A child that segfaults, aborts, hangs or is killed still yields a
   record (crash / timeout) and the next recipe runs.
4. One JSON line per recipe, built and validated by matrix/records.py, is appended to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from matrix.measure import records
from matrix.measure.records import head_and_tail
from matrix.measure.checkpoint import CheckpointMaker
from matrix.measure.checks import REL_ERROR_LIMIT, check_4bit, reference_logits
from matrix.measure.gpu_memory import GIB, MIB, emulate_budget, expand_max_memory, gpu_peaks, layers_per_device
from matrix.measure.runner import runner_facts



# ----------------------------------------------------------------------------------------------------------
# Small stdlib helpers

def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _rss_mib() -> float:
    """Current resident set size of this process."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / MIB, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ----------------------------------------------------------------------------------------------------------
# One recipe, in its own process

def _to_torch(value):
    """TOML cannot hold dtypes: "torch.float16" -> torch.float16, recursively."""
    import torch

    if isinstance(value, str) and value.startswith("torch."):
        return getattr(torch, value.split(".", 1)[1])
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    return value


def _sync():
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _placement(model) -> dict:
    """Where the weights landed: device -> number of parameter tensors."""
    counts: dict[str, int] = {}
    for param in model.parameters():
        counts[str(param.device)] = counts.get(str(param.device), 0) + 1
    return counts


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies: a probe (or recipe) whose nox was killed with
    kill -9 or Ctrl-C must not live on and keep appending records behind the user's back."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the probe's own timeouts still bound it
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _test_hook(hook: str) -> None:
    """Misbehave on purpose, for the reliability tests (a recipe sets BNB_MATRIX_PROBE_HOOK in its `env`):
    the failures native code really produces, provoked for real in the recipe process."""
    if hook == "segfault":
        import ctypes

        ctypes.string_at(0)  # read address 0: SIGSEGV, as a broken native library does
    elif hook == "abort":
        os.abort()  # SIGABRT, as a failed C++ assertion does
    elif hook == "hang":
        time.sleep(10**6)  # a deadlocked kernel or a stuck download
    elif hook == "oom":
        import torch

        # cap this process's address space a little above what it uses, then ask for more than that
        limit = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE") + 512 * MIB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        torch.ones(4 * GIB, dtype=torch.uint8)
    elif hook == "oom-kill":
        # the kernel's OOM killer for real: join a fresh memory cgroup (v1) capped a little above this
        # process's use, then touch more than that; the kernel answers with SIGKILL
        group = Path("/sys/fs/cgroup/memory") / f"bnb-matrix-test-{os.getpid()}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(int((_rss_mib() + 256) * MIB)))
        (group / "tasks").write_text(str(os.getpid()))
        _ = b"\x01" * (2 * GIB)
    elif hook:
        raise ValueError(f"unknown BNB_MATRIX_PROBE_HOOK {hook!r}: segfault, abort, hang, oom or oom-kill")


def run_recipe(job: dict, result_path: Path) -> int:
    """Load, check and run one recipe; write a partial record (JSON) to result_path. Returns the exit code."""
    out: dict = {"timings_s": {}, "memory_mib": {}, "checks": {}, "stage": "import"}
    start = time.monotonic()
    # CLOCK_MONOTONIC is one clock for every process of the machine: the parent's fork/spawn time is comparable
    if job.get("started_at"):
        out["timings_s"]["start"] = round(start - job["started_at"], 3)

    def save() -> None:
        now = time.monotonic()
        out["timings_s"]["recipe"] = round(now - start, 3)
        out["ended_at"] = now  # the parent counts from here to the process's exit as teardown
        result_path.write_text(json.dumps(out))

    last = [start]  # end of the last timed phase: a failure's time is counted from there

    def timed(name: str, since: float) -> None:
        last[0] = time.monotonic()
        out["timings_s"][name] = round(last[0] - since, 3)

    def enter(stage: str) -> None:
        """Saved at every stage, so a process that dies still tells the parent how far it got."""
        out["stage"] = stage
        save()

    try:
        t = time.monotonic()
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        timed("imports_recipe", t)  # ~0 when forked from a parent that imported the load path
        recipe, shape, budget = job["recipe"], job["shape"], job.get("budget_gib")
        out["checks"]["start_method"] = job["start_method"]
        out["memory_mib"]["cpu_rss_before"] = _rss_mib()
        t = time.monotonic()
        cuda = torch.cuda.is_available()
        gpus = list(range(torch.cuda.device_count())) if cuda else []
        if cuda:
            # the CUDA context on its own line; bitsandbytes' import would otherwise create it (its cuda_specs
            # ask for the device capability) and hide it in the import's time
            torch.cuda.init()
            out["checks"]["torch_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            out["checks"]["gpu_count"] = len(gpus)
        timed("cuda_init", t)
        t = time.monotonic()
        import bitsandbytes  # noqa: F401 - already imported on CPU runners; first import here on GPU runners

        timed("imports_bnb", t)
        ballast: list = []
        base: dict[int, int] = {}
        if cuda:
            t = time.monotonic()
            if budget:
                ballast = emulate_budget(torch, gpus, budget)
                out["memory_mib"]["ballast"] = round(sum(b.numel() for b in ballast) / MIB, 1)
            for i in gpus:
                torch.cuda.reset_peak_memory_stats(i)
                base[i] = torch.cuda.memory_allocated(i)
            timed("budget", t)

        enter("load")
        _test_hook(os.environ.get("BNB_MATRIX_PROBE_HOOK", ""))
        config = BitsAndBytesConfig(**_to_torch(recipe["bnb_config"]))
        kwargs = expand_max_memory(_to_torch(recipe["from_pretrained"]), len(gpus), Path(job["checkpoint"]))
        if "max_memory" in kwargs:
            out["checks"]["max_memory"] = {str(k): v for k, v in kwargs["max_memory"].items()}
        t = time.monotonic()
        model = AutoModelForCausalLM.from_pretrained(job["checkpoint"], quantization_config=config, **kwargs)
        _sync()
        timed("load", t)
        t = time.monotonic()
        if cuda:
            out["memory_mib"].update(gpu_peaks(torch, base, "gpu_load_peak"))
        out["memory_mib"]["footprint"] = round(model.get_memory_footprint() / MIB, 1)
        out["checks"]["placement"] = _placement(model)
        if getattr(model, "hf_device_map", None):
            out["checks"]["device_map"] = sorted({str(v) for v in model.hf_device_map.values()})
            out["checks"]["layers_per_device"] = layers_per_device(model.hf_device_map,
                                                                   shape["config"]["num_hidden_layers"])

        timed("inspect", t)
        enter("check")
        t = time.monotonic()
        out["checks"].update(check_4bit(model, shape, Path(job["checkpoint"])))
        timed("check_weights", t)

        device = model.get_input_embeddings().weight.device
        ids = torch.randint(0, shape["config"]["vocab_size"], (1, 16), generator=torch.Generator().manual_seed(1))
        ids = ids.to(device)
        # The reference runs first: bitsandbytes >= 0.49 repacks 4-bit weights for its CPU kernels on the first
        # real forward, after which dequantize_4bit of the stored data no longer means the same thing.
        enter("forward")
        t = time.monotonic()
        ref = reference_logits(model, ids)
        out["timings_s"]["check_reference"] = round(time.monotonic() - t, 3)
        for i in gpus:
            torch.cuda.reset_peak_memory_stats(i)
        t = time.monotonic()
        with torch.no_grad():
            logits = model(ids).logits.float()
        _sync()
        out["timings_s"]["forward"] = round(time.monotonic() - t, 3)
        if cuda:
            out["memory_mib"].update(gpu_peaks(torch, base, "gpu_forward_peak"))
            reserved = sum(torch.cuda.max_memory_reserved(i) for i in gpus)
            out["memory_mib"]["gpu_reserved_peak"] = round(reserved / MIB, 1)
            # device memory in use as the driver counts it (what nvidia-smi / NVML show), less the ballast
            used = sum(total - free for free, total in map(torch.cuda.mem_get_info, gpus))
            out["memory_mib"]["nvml_used"] = round((used - sum(b.numel() for b in ballast)) / MIB, 1)

        enter("check")
        t = time.monotonic()
        finite = bool(torch.isfinite(logits).all())
        out["checks"]["finite"] = finite
        if not finite:
            raise AssertionError("forward pass produced NaN or Inf logits")
        rel = float((logits - ref.to(logits.device)).norm() / ref.norm().clamp_min(1e-12))
        out["checks"]["rel_error"] = round(rel, 6)
        if not rel < REL_ERROR_LIMIT:
            raise AssertionError(f"logits differ from the dequantized fp32 reference by {rel:.3g} "
                                 f"(limit {REL_ERROR_LIMIT}): the 4-bit kernels returned garbage")
        timed("check_logits", t)
        out["memory_mib"]["cpu_peak_rss"] = _peak_rss_mib()
        out["stage"] = ""
        out["outcome"] = "pass"
        save()
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is data
        out["outcome"] = "fail"
        timed("until_failure", last[0])
        out["error_type"] = type(exc).__name__
        out["error_message"] = head_and_tail(str(exc), 4000)
        traceback.print_exc()  # lands in the recipe's stderr log, so the tail has the traceback too
        out["memory_mib"]["cpu_peak_rss"] = _peak_rss_mib()
        save()
        return 1


def _child_main(job: dict, result_path: Path, log_path: Path) -> None:
    """In a forked child: own process group, stdout/stderr to the recipe log, never return."""
    code = 70
    try:
        die_with_parent()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = run_recipe(job, result_path)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _wait_fork(pid: int, timeout: float) -> tuple[int | None, bool]:
    """Wait for a forked child; (exit code or -signal, timed_out)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status), True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _run_spawned(job: dict, result_path: Path, log_path: Path, env: dict, timeout: float) -> tuple[int | None, bool]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "matrix.measure.probe", "--one", json.dumps(job),
                                 str(result_path)],
                                stdout=log, stderr=log, env={**os.environ, **env}, start_new_session=True)
        try:
            return proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(), True


# ----------------------------------------------------------------------------------------------------------
# The cell: imports once, then one process per recipe

def _import_stack(with_bnb: bool = True) -> tuple[dict, str, float, BaseException | None]:
    """Import torch / transformers (/ bitsandbytes) with fd 2 captured; (versions, import log, seconds, error).

    On GPU runners bitsandbytes is left to each recipe process: its import initialises CUDA, and a parent
    holding a CUDA context cannot fork.
    """
    log = tempfile.TemporaryFile()
    saved = os.dup(2)
    sys.stderr.flush()
    os.dup2(log.fileno(), 2)
    versions = {"python": platform.python_version()}
    error = None
    started = time.monotonic()
    try:
        import torch

        versions.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
        import transformers

        versions["transformers"] = transformers.__version__
        import accelerate

        versions["accelerate"] = accelerate.__version__
        if with_bnb:
            import bitsandbytes

            versions["bitsandbytes"] = getattr(bitsandbytes, "__version__", "")
    except BaseException as exc:  # noqa: BLE001 - an import failure is the finding
        error = exc
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    seconds = time.monotonic() - started
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    sys.stderr.write(text)  # still visible in the nox log
    if "bitsandbytes" not in versions or "torch" not in versions:
        from importlib import metadata

        for dist, key in (("bitsandbytes", "bitsandbytes"), ("transformers", "transformers"), ("torch", "torch")):
            try:
                versions.setdefault(key, metadata.version(dist))
            except metadata.PackageNotFoundError:
                versions.setdefault(key, "")
    return versions, text, seconds, error


# What the first 4-bit from_pretrained imports lazily (about 1,000 modules, 3-4 s on a 2-core machine; see
# BENCHMARKS.md). Imported once in the parent, every forked recipe gets them for free. torch._inductor.compile_fx
# is most of bitsandbytes' own import time (>= 0.46 imports it from backends.default.ops), 3-4 s on an H100 host.
LAZY_MODULES = ("torch._dynamo", "torch._inductor.compile_fx", "transformers.modeling_utils",
                "transformers.models.auto.modeling_auto", "transformers.generation", "transformers.quantizers.auto",
                "transformers.quantizers.quantizer_bnb_4bit", "transformers.integrations.bitsandbytes",
                "transformers.models.llama.modeling_llama")
# These import bitsandbytes, whose import creates a CUDA context (cuda_specs asks for the device capability):
# on GPU runners they are left to the recipe, so the parent can still fork.
IMPORTS_BITSANDBYTES = ("transformers.integrations.bitsandbytes",)


def _warm_lazy_imports(on_gpu: bool) -> float:
    """Import LAZY_MODULES in the parent (on GPU runners those that do not import bitsandbytes). A module that
    fails to import is left to the recipe to fail on."""
    import importlib

    started = time.monotonic()
    for name in LAZY_MODULES:
        if on_gpu and name in IMPORTS_BITSANDBYTES:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the recipe will meet the same error and record it
            pass
    return time.monotonic() - started


def _fork_safe() -> bool:
    """Forking is safe only while this process holds no CUDA context."""
    torch = sys.modules.get("torch")
    return torch is not None and not torch.cuda.is_initialized() and hasattr(os, "fork")


# The phases of one record's own process, as the parent sees it: start (fork/spawn), the recipe's phases, and
# teardown (exit, CUDA context released). `process` is their wall time; what they do not cover is `unaccounted`.
RECORD_PHASES = ("start", "imports_recipe", "cuda_init", "imports_bnb", "budget", "load", "inspect",
                 "check_weights", "check_reference", "forward", "check_logits", "until_failure", "teardown")


def unaccounted(timings: dict) -> float:
    """Seconds of `process` that no phase covers (the parent's own bookkeeping, and a failed recipe's rest).
    Never below 0: each phase is rounded to the millisecond, so their sum can pass `process` by a few of them,
    and a record with a negative time is refused on read."""
    return max(0.0, round(timings.get("process", 0.0) - sum(timings.get(k, 0.0) for k in RECORD_PHASES), 3))


def probe_cell(spec: dict, out: Path) -> int:
    """Measure every job of the spec; append one record line per job to `out` as it finishes. Returns 0."""
    t_process = time.monotonic()
    # torch.cuda.is_available() (called by transformers and accelerate at import) otherwise runs
    # cudaGetDeviceCount, which initialises the driver in this parent and makes forked recipes unsafe;
    # the NVML-based check answers the same question without touching CUDA.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    runner = runner_facts()
    on_gpu = runner["kind"] == "gpu"
    maker: CheckpointMaker | None = None
    maker_error: BaseException | None = None
    if not spec.get("checkpoint"):  # made alongside the imports below: its own interpreter imports too
        try:
            maker = CheckpointMaker(spec["shape"], Path(spec["cache"]), spec["timeout_s"] * 2).start()
        except OSError as exc:
            maker_error = exc
    versions, import_log, import_s, import_error = _import_stack(with_bnb=not on_gpu)
    if import_error is None:
        import_s += _warm_lazy_imports(on_gpu)
    # what the recipes inherit: on a GPU runner the parent must hold no CUDA context (then it forks)
    parent_state = {"parent_cuda_initialized": bool(sys.modules.get("torch") and
                                                    sys.modules["torch"].cuda.is_initialized()),
                    "parent_imported_bnb": "bitsandbytes" in sys.modules}
    if versions.get("torch_cuda"):
        runner["cuda_runtime"] = versions["torch_cuda"]
    ckpt, ckpt_s, ckpt_error = None, 0.0, maker_error
    if spec.get("checkpoint"):
        ckpt = Path(spec["checkpoint"])
    elif maker is not None:
        try:  # `checkpoint` is its own wall time, most of it spent while this process imported
            ckpt, ckpt_s = maker.wait()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            ckpt_error = exc
    mode = spec.get("start_method", "auto")
    workdir = Path(tempfile.mkdtemp(prefix="bnb-probe-"))
    # shared by every record of this probe: the cell's install (host), and this process up to its first job
    setup_s = time.monotonic() - t_process
    for job in spec["jobs"]:
        recipe = job["recipe"]
        record = records.draft(spec["base"], runner, recipe["name"], spec["shape"]["name"], versions=versions,
                               budget_gib=job.get("budget_gib"), fingerprint=job["fingerprint"],
                               env=recipe.get("env", {}), checks=dict(parent_state),
                               timings_s={"install": spec.get("install_s", 0.0), "setup": round(setup_s, 3),
                                          "imports": round(import_s, 3), "checkpoint": round(ckpt_s, 3)})
        started = time.monotonic()
        if import_error is not None:
            record.update(outcome="fail", stage="import", error_type=type(import_error).__name__,
                          error_message=head_and_tail(str(import_error), 4000),
                          stderr_tail=head_and_tail(import_log))
        elif ckpt_error is not None:
            record.update(outcome="fail", stage="checkpoint", error_type=type(ckpt_error).__name__,
                          error_message=head_and_tail(str(ckpt_error), 4000),
                          stderr_tail=head_and_tail(import_log))
        elif recipe.get("requires") == "gpu" and not on_gpu:
            record.update(outcome="skip", skip_reason="this recipe offloads from a GPU; this runner has no GPU")
        else:
            tag = f"{recipe['name']}-{job.get('budget_gib') or 'full'}"
            result_path, log_path = workdir / f"{tag}.json", workdir / f"{tag}.log"
            fork = mode != "spawn" and not recipe.get("env") and _fork_safe()
            child_job = {**job, "shape": spec["shape"], "checkpoint": str(ckpt),
                         "start_method": "fork" if fork else "spawn", "started_at": time.monotonic()}
            if fork:
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    os.setpgid(0, 0)
                    _child_main(child_job, result_path, log_path)
                code, timed_out = _wait_fork(pid, spec["timeout_s"])
            else:
                code, timed_out = _run_spawned(child_job, result_path, log_path, recipe.get("env", {}),
                                               spec["timeout_s"])
            exited = time.monotonic()
            log = _read(log_path)
            sys.stderr.write(log)
            record["exit_code"] = code
            # fork: the import happened in the parent, so its log belongs to every recipe's tail
            record["stderr_tail"] = head_and_tail((import_log if fork else "") + log)
            partial = {}
            if result_path.exists():
                try:
                    partial = json.loads(result_path.read_text())
                except ValueError:
                    partial = {}
            for key in ("timings_s", "memory_mib", "checks"):
                record[key].update(partial.get(key, {}))
            if partial.get("ended_at"):  # the process's exit: CUDA context and memory released
                record["timings_s"]["teardown"] = round(exited - partial["ended_at"], 3)
            if timed_out:
                record.update(outcome="timeout", stage=partial.get("stage", "process"), error_type="Timeout",
                              error_message=f"recipe process exceeded {spec['timeout_s']} s and was killed")
            elif partial.get("outcome") and code in (0, 1):
                for key in ("outcome", "stage", "error_type", "error_message"):
                    record[key] = partial.get(key, record[key])
            else:
                name = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
                record.update(outcome="crash", stage=partial.get("stage", "process"), error_type="ProcessDied",
                              error_message=f"recipe process died with {name} during "
                                            f"{partial.get('stage', 'start-up')}")
        record["timings_s"]["process"] = round(time.monotonic() - started, 3)
        record["timings_s"]["unaccounted"] = unaccounted(record["timings_s"])
        records.append(out, records.from_dict(record, f"probe of {recipe['name']}"))
    shutil.rmtree(workdir, ignore_errors=True)
    sys.stderr.write(f"probe: {len(spec['jobs'])} job(s) in {time.monotonic() - t_process:.1f} s\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="JSON file describing the cell's jobs (written by matrix/measure.py)")
    parser.add_argument("--out", help="JSON-lines file to append records to")
    parser.add_argument("--one", nargs=2, metavar=("JOB", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--facts", action="store_true", help="print this machine's runner facts and exit")
    args = parser.parse_args(argv)
    if args.facts:
        print(json.dumps(runner_facts(), indent=2))
        return 0
    if args.one:
        die_with_parent()
        return run_recipe(json.loads(args.one[0]), Path(args.one[1]))
    if not (args.spec and args.out):
        parser.error("--spec and --out are required")
    die_with_parent()
    return probe_cell(json.loads(Path(args.spec).read_text()), Path(args.out))


if __name__ == "__main__":
    sys.exit(main())

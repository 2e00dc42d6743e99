"""Pre-quantized checkpoints, inside one cell's venv: write a 4-bit checkpoint with this cell's versions, or read
one that another release wrote, and check it against what the writer saw.

Run as `python -m matrix.measure.prequant --spec SPEC.json --out OUT.jsonl` (matrix/measure/readback.py does this,
with only our package on PYTHONPATH, like the probe). Stdlib at import; torch, transformers and bitsandbytes
inside functions. One record per job, appended to OUT as it finishes.

A writer (job role "write") loads the shape's fp16 checkpoint (the probe's, cached) with the recipe's
BitsAndBytesConfig, writes down what the writer itself sees *before any forward pass* (bitsandbytes >= 0.49
repacks 4-bit weights for its CPU kernels on the first forward): per Linear4bit layer its largest dequantized
weight and SAMPLES of them at a fixed stride, the first layer's dequantized weight in full; then
`save_pretrained`, then its logits on fixed token ids. The folder is
`<cache>/prequant/v<FORMAT>/<shape>-<key>/<writer>/<recipe>/` with `model/` (what save_pretrained wrote),
`reference.safetensors` and `writer.json`; it appears under its final name only once complete.

A reader (role "read") loads `model/` with no quantization_config (the saved config.json carries it), and passes
when the decoder's linears are Linear4bit of the writer's quant type, every layer's sampled dequantized weights
equal the writer's within WEIGHT_TOLERANCE of the layer's largest, and its logits are finite and within
LOGIT_TOLERANCE of the writer's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

from matrix.measure import records
from matrix.measure.checkpoint import CheckpointMaker, checkpoint_dir
from matrix.measure.records import head_and_tail
from matrix.measure.runner import runner_facts

# Largest difference of a dequantized weight from the writer's, relative to the layer's largest weight. The same
# 4-bit codes dequantized by another release may round differently in the last fp16 bit (2**-10 relative); one code
# read wrongly moves a weight by at least a step of the code book (NF4: about 0.08 of the absmax).
WEIGHT_TOLERANCE = 2e-3
SAMPLES = 4096  # weights compared per layer, at a fixed stride (the first layer is compared whole)
# Relative L2 difference of the reader's logits from the writer's (fp16 model, fp32 compute): other kernels and
# other releases round differently (measured: below 2e-3); a misread layout gives differences near 1.
LOGIT_TOLERANCE = 1e-2
FIRST_LAYER = "model.layers.0.self_attn.q_proj"
TOKENS = 16


def writer_key(requested: dict) -> str:
    """The folder name of a writer: the versions that wrote it, as requested (torch build, bnb, transformers)."""
    return f"torch-{requested['torch']}_bnb-{requested['bnb']}_tf-{requested['transformers']}"


FORMAT = 2  # of the folders (reference.safetensors, writer.json); folders of another format are not read


def shape_root(cache: Path, shape: dict) -> Path:
    """Where every writer's folders for this shape live (beside the probe's fp16 checkpoints)."""
    return cache / "prequant" / f"v{FORMAT}" / checkpoint_dir(Path(), shape).name


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor name -> dtype, shape, offsets; __metadata__), read with the
    stdlib: the layout is published from it without loading a tensor."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        if size > 100 * 2**20:
            raise ValueError(f"{path}: safetensors header of {size} bytes is not plausible")
        return json.loads(handle.read(size))


def layout(model_dir: Path) -> dict:
    """What a saved 4-bit checkpoint holds for one quantized linear: the tensor names after the layer's prefix
    (weight, weight.absmax, weight.quant_map, weight.nested_absmax, weight.quant_state.bitsandbytes__nf4, ...),
    their dtypes, and the quantization_config keys of config.json."""
    tensors: dict[str, str] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        for name, info in safetensors_header(path).items():
            if name.startswith(FIRST_LAYER + "."):
                tensors[name[len(FIRST_LAYER) + 1:]] = str(info.get("dtype", ""))
    config = json.loads((model_dir / "config.json").read_text()).get("quantization_config", {})
    return {"tensors": [f"{k}:{v}" for k, v in sorted(tensors.items())],
            "quant_config": sorted(k for k in config if not k.startswith("_")),
            "quant_method": str(config.get("quant_method", ""))}


# ----------------------------------------------------------------------------------------------------------
# In the cell: torch, transformers and bitsandbytes are imported here only

def _config(bnb_config: dict):
    import torch
    from transformers import BitsAndBytesConfig

    values = {k: getattr(torch, v.split(".", 1)[1]) if isinstance(v, str) and v.startswith("torch.") else v
              for k, v in bnb_config.items()}
    return BitsAndBytesConfig(**values)


def _load_kwargs() -> dict:
    """fp16 weights outside the 4-bit layers; on a GPU everything on GPU 0. `dtype` from transformers 4.56 on."""
    import torch
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    kwargs = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.float16}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
    return kwargs


def _linear4bit(model, shape: dict) -> dict:
    """name -> Linear4bit; raises unless every decoder linear is one."""
    import bitsandbytes as bnb

    found = {name: m for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    expected = 7 * shape["config"]["num_hidden_layers"]
    if len(found) < expected:
        raise AssertionError(f"only {len(found)} of {expected} decoder linears are Linear4bit: not a 4-bit load")
    return found


def _dequantized(module):
    import bitsandbytes as bnb

    state = getattr(module.weight, "quant_state", None)
    if state is None:
        raise AssertionError("a Linear4bit weight has no quant_state: the weight was not quantized")
    return bnb.functional.dequantize_4bit(module.weight.data, state)


def _samples(layers: dict):
    """(layer names, [layers, SAMPLES] dequantized weights at a fixed stride, [layers] largest |weight|), fp32 on
    the CPU; dequantized on each layer's device, so the whole model is never copied to the host."""
    import torch

    names, rows, peaks = sorted(layers), [], []
    for name in names:
        w = _dequantized(layers[name]).float().flatten()
        step = max(1, w.numel() // SAMPLES)
        rows.append(w[::step][:SAMPLES].cpu())
        peaks.append(float(w.abs().max()))
    return names, torch.stack(rows), torch.tensor(peaks)


def _logits(model, ids):
    import torch

    with torch.no_grad():
        logits = model(ids.to(model.get_input_embeddings().weight.device)).logits.float().cpu()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return logits


def write(job: dict, shape: dict, cache: Path, out: dict) -> None:
    """Quantize, save, and write down the writer's own view (see the module docstring)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    folder = Path(job["folder"])
    t = time.monotonic()
    out["stage"] = "checkpoint"
    ckpt, _ = CheckpointMaker(shape, cache / "checkpoints", 1800).start().wait()
    out["timings_s"]["checkpoint"] = round(time.monotonic() - t, 3)
    out["stage"], t = "load", time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), quantization_config=_config(job["bnb_config"]),
                                                 **_load_kwargs())
    out["timings_s"]["load"] = round(time.monotonic() - t, 3)
    out["stage"], t = "check", time.monotonic()
    layers = _linear4bit(model, shape)
    first = _dequantized(layers[FIRST_LAYER]).float().cpu()
    names, samples, peaks = _samples(layers)
    quant_type = str(layers[FIRST_LAYER].weight.quant_state.quant_type)
    out["timings_s"]["check_weights"] = round(time.monotonic() - t, 3)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    out["stage"], t = "checkpoint", time.monotonic()
    model.save_pretrained(tmp / "model", safe_serialization=True)
    out["timings_s"]["save"] = round(time.monotonic() - t, 3)
    out["stage"], t = "forward", time.monotonic()
    ids = torch.randint(0, shape["config"]["vocab_size"], (1, TOKENS), generator=torch.Generator().manual_seed(1))
    logits = _logits(model, ids)
    out["timings_s"]["forward"] = round(time.monotonic() - t, 3)
    if not bool(torch.isfinite(logits).all()):
        raise AssertionError("the writer's own forward pass produced NaN or Inf logits")
    save_file({"logits": logits.contiguous(), "ids": ids.contiguous(), "first_layer": first.contiguous(),
               "samples": samples.contiguous(), "peaks": peaks.contiguous()}, str(tmp / "reference.safetensors"))
    lay = layout(tmp / "model")
    (tmp / "writer.json").write_text(json.dumps({"saved_with": job["saved_with"] | {"quant_type": quant_type},
                                                 "layers": names, "layout": lay}))
    shutil.rmtree(folder, ignore_errors=True)  # a rewrite (--force) replaces the old folder
    tmp.rename(folder)
    out["checks"].update(quant_type=quant_type, linear4bit=len(layers), layout=lay["tensors"],
                         quant_config=lay["quant_config"], saved_mib=round(sum(
                             p.stat().st_size for p in (folder / "model").iterdir()) / 2**20, 2))


def read(job: dict, shape: dict, out: dict) -> None:
    """Load a folder another release wrote and compare with its writer's view."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    folder = Path(job["folder"])
    writer = json.loads((folder / "writer.json").read_text())
    reference = load_file(str(folder / "reference.safetensors"))
    out["checks"]["layout"] = writer["layout"]["tensors"]
    out["stage"], t = "load", time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(str(folder / "model"), **_load_kwargs())
    out["timings_s"]["load"] = round(time.monotonic() - t, 3)
    out["stage"], t = "check", time.monotonic()
    layers = _linear4bit(model, shape)
    out["checks"]["linear4bit"] = len(layers)
    quant_type = str(layers[FIRST_LAYER].weight.quant_state.quant_type)
    out["checks"]["quant_type"] = quant_type
    if quant_type != writer["saved_with"]["quant_type"]:
        raise AssertionError(f"loaded as {quant_type}, written as {writer['saved_with']['quant_type']}")
    first = _dequantized(layers[FIRST_LAYER]).float().cpu()
    out["checks"]["first_layer_max_abs_diff"] = float((first - reference["first_layer"]).abs().max())
    out["checks"]["first_layer_bit_exact"] = bool(torch.equal(first, reference["first_layer"]))
    names, samples, _ = _samples(layers)
    missing = sorted(set(writer["layers"]) - set(names))
    if missing:
        raise AssertionError(f"{len(missing)} layer(s) the writer quantized are not Linear4bit here: {missing[0]}")
    mine = samples[[names.index(n) for n in writer["layers"]]]
    diff = (mine - reference["samples"]).abs().max(dim=1).values / reference["peaks"].clamp_min(1e-12)
    worst, worst_layer = float(diff.max()), writer["layers"][int(diff.argmax())]
    out["checks"]["weight_rel_diff"] = worst
    out["checks"]["layers_bit_exact"] = int((diff == 0).sum())
    out["checks"]["layers_compared"] = len(writer["layers"])
    out["timings_s"]["check_weights"] = round(time.monotonic() - t, 3)
    if not worst <= WEIGHT_TOLERANCE:
        raise AssertionError(f"dequantized weights of {worst_layer} differ from the writer's by {worst:.3g} "
                             f"(limit {WEIGHT_TOLERANCE}): the saved 4-bit data is read differently")
    out["stage"], t = "forward", time.monotonic()
    logits = _logits(model, reference["ids"])
    out["timings_s"]["forward"] = round(time.monotonic() - t, 3)
    out["stage"] = "check"
    finite = bool(torch.isfinite(logits).all())
    out["checks"]["finite"] = finite
    if not finite:
        raise AssertionError("forward pass produced NaN or Inf logits")
    ref = reference["logits"]
    rel = float((logits - ref).norm() / ref.norm().clamp_min(1e-12))
    out["checks"]["logits_rel_diff"] = round(rel, 7)
    if not rel <= LOGIT_TOLERANCE:
        raise AssertionError(f"logits differ from the writer's by {rel:.3g} (limit {LOGIT_TOLERANCE})")


def _versions() -> dict:
    from importlib import metadata
    import platform

    versions = {"python": platform.python_version()}
    for dist in ("torch", "bitsandbytes", "transformers", "accelerate", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = ""
    return versions


def run_spec(spec: dict, out_path: Path) -> int:
    """Every job of the spec in this process, in order; one record each. Returns 0."""
    runner, versions = runner_facts(), _versions()
    shape, cache = spec["shape"], Path(spec["cache"])
    for job in spec["jobs"]:
        out: dict = {"timings_s": {}, "checks": {"role": job["role"]}, "stage": "import"}
        started = time.monotonic()
        try:
            import bitsandbytes  # noqa: F401 - an import failure is the finding, per job

            (write if job["role"] == "write" else read)(*((job, shape, cache, out) if job["role"] == "write"
                                                          else (job, shape, out)))
            out.update(outcome="pass", stage="")
        except BaseException as exc:  # noqa: BLE001 - every failure is data
            traceback.print_exc()
            out.update(outcome="fail", error_type=type(exc).__name__, error_message=head_and_tail(str(exc), 4000))
        out["timings_s"]["process"] = round(time.monotonic() - started, 3)
        record = records.draft(spec["base"], runner, job["recipe"], shape["name"], versions=versions,
                               fingerprint=job["fingerprint"], saved_with=job["saved_with"],
                               **{k: out[k] for k in ("timings_s", "checks", "stage")},
                               **{k: out[k] for k in ("outcome", "error_type", "error_message") if k in out})
        if record["outcome"] != "pass":
            sys.stderr.flush()
            record["stderr_tail"] = head_and_tail(_read_log(spec.get("log", "")))
        records.append(out_path, records.from_dict(record, f"prequant {job['role']} of {job['recipe']}"))
    return 0


def _read_log(path: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8", "replace") if path else ""
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file of the jobs (written by matrix/measure/readback.py)")
    parser.add_argument("--out", required=True, help="JSON-lines file to append records to")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return run_spec(json.loads(Path(args.spec).read_text()), Path(args.out))


if __name__ == "__main__":
    sys.exit(main())

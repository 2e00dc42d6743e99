"""What makes a load a 4-bit load: the decoder's linears are Linear4bit, their dequantized weights match the
checkpoint, and the logits agree with an fp32 reference from the same weights. Runs in the cell's interpreter
(stdlib at import; torch and bitsandbytes inside functions)."""

from __future__ import annotations

import json
from pathlib import Path

REL_ERROR_LIMIT = 0.1  # logits vs dequantized-fp32 reference; garbage loads land near 1 or NaN
WEIGHT_ERROR_LIMIT = 0.3  # dequantized 4-bit weight vs the fp16 checkpoint (4-bit error is ~0.1)


def checkpoint_tensor(path: Path, name: str):
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    file = json.loads(index.read_text())["weight_map"][name] if index.exists() else "model.safetensors"
    with safe_open(str(path / file), framework="pt") as handle:
        return handle.get_tensor(name)


def check_4bit(model, shape: dict, ckpt: Path) -> dict:
    """Are the linear layers really 4-bit, and do their dequantized weights match the checkpoint?"""
    import bitsandbytes as bnb
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in linears if isinstance(m, bnb.nn.Linear4bit)]
    expected = 7 * shape["config"]["num_hidden_layers"]  # q k v o gate up down per decoder layer
    result = {"linear4bit": len(quantized), "linear_total": len(linears), "linear4bit_expected": expected}
    if len(quantized) < expected:
        raise AssertionError(f"only {len(quantized)} of {expected} decoder linears are Linear4bit: not a 4-bit load")
    layer = model.model.layers[0].self_attn.q_proj
    state = getattr(layer.weight, "quant_state", None)
    if state is None:
        raise AssertionError("q_proj.weight has no quant_state: the weight was not quantized")
    result["quant_type"] = getattr(state, "quant_type", "")
    deq = bnb.functional.dequantize_4bit(layer.weight.data, state).float().cpu()
    ref = checkpoint_tensor(ckpt, "model.layers.0.self_attn.q_proj.weight").float()
    err = float((deq - ref).norm() / ref.norm())
    result["weight_rel_error"] = round(err, 5)
    if not err < WEIGHT_ERROR_LIMIT:
        raise AssertionError(f"dequantized q_proj differs from the checkpoint by {err:.3f} "
                             f"(limit {WEIGHT_ERROR_LIMIT})")
    return result


def reference_logits(model, ids):
    """The same model with every Linear4bit computed in fp32 from its own dequantized weight."""
    import bitsandbytes as bnb
    import torch
    import torch.nn.functional as F

    patched = []

    def dequantized_forward(module):
        def forward(x, *args, **kwargs):
            w = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
            bias = None if module.bias is None else module.bias.float()
            return F.linear(x.float(), w, bias).to(x.dtype)
        return forward

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.forward = dequantized_forward(module)
            patched.append(module)
    try:
        with torch.no_grad():
            return model(ids).logits.float()
    finally:
        for module in patched:
            del module.forward  # back to the class's forward

"""The error-signature catalogue and the classifier: real messages, near misses, root causes, hostile input."""

from __future__ import annotations

import dataclasses
import re
import time
import tomllib
from pathlib import Path

import pytest

from matrix.errors import UserError
from matrix.measure.records import Record, iter_file, read_results
from matrix.diagnose.signatures import (CRASH, DEFAULT_CATALOGUE, TIMEOUT, UNCLASSIFIED, Fix, Signature, classify,
                               classify_record, default_catalogue, find_warnings, load_catalogue, normalise)

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = Path(__file__).parent.parent / "results"
BNB = "https://github.com/bitsandbytes-foundation/bitsandbytes/blob"

# ---------------------------------------------------------------------------------------------------------
# Real message samples, at least two per signature, each with where it was seen. Texts are as users pasted
# them (trimmed); the classifier gets them as the exception message with no stderr.
SAMPLES: dict[str, list[tuple[str, str]]] = {
    "native-library-missing": [
        ("RuntimeError: Configured CUDA binary not found at "
         "/home/ubuntu/src/bnb/bitsandbytes/libbitsandbytes_cuda118.so",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/pull/1615"),
        ("Could not find the bitsandbytes CUDA binary at PosixPath('/usr/local/lib/python3.10/dist-packages/"
         "bitsandbytes-0.43.2.dev0-py3.10-linux-x86_64.egg/bitsandbytes/libbitsandbytes_cuda121.so')",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1190"),
        ("\n🚨 CUDA VERSION MISMATCH 🚨\nRequested CUDA version:          11.8\nDetected PyTorch CUDA version:   11.8\n"
         "Available pre-compiled versions: \n  - 12.4\n",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/pull/1615"),
        ("CUDA SETUP: Required library version not found: libbitsandbytes_cuda118.so.\nMaybe you need to compile it "
         "from source?", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/487"),
        ("bitsandbytes library load error: Configured CUDA binary not found at .../libbitsandbytes_cuda132.dll",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1848"),
        # bnb 0.50 renamed the error (get_native_library) and, since the mock then no longer recognises it, prints
        # the generic "checked the code out from source" advice instead of the VERSION MISMATCH banner
        ("RuntimeError: Attempted to use bitsandbytes native library functionality but it's not available.\n\n"
         "This typically happens when you checked the code out from source and your torch installation doesn't "
         "detect CUDA on your machine.\n\nCOMPILE FROM SOURCE for CPU-only:\n  `cmake -DCOMPUTE_BACKEND=cpu -S . && "
         "make`\n\nOriginal error: No compatible CUDA binary found at /venv/lib/python3.12/site-packages/bitsandbytes/"
         "libbitsandbytes_cuda130.so\n", f"{BNB}/0.50.2/bitsandbytes/cextension.py"),
        # bnb 0.47-0.49 word the banner with the backend's name, so ROCm builds say ROCm
        ("\n🚨 ROCm VERSION MISMATCH 🚨\nRequested ROCm version:          6.4\nDetected PyTorch ROCm version:   6.4\n"
         "Available pre-compiled versions: \n  - 6.1\n  - 6.2\n\nThis means:\nThe version you're trying to use is NOT "
         "distributed with this package", f"{BNB}/0.47.0/bitsandbytes/cextension.py"),
        ("Original error: Configured ROCm binary not found at /opt/venv/lib/python3.12/site-packages/bitsandbytes/"
         "libbitsandbytes_rocm64.so", f"{BNB}/0.48.2/bitsandbytes/cextension.py"),
    ],
    "cuda-runtime-missing": [
        ("Could not load bitsandbytes native library: libcusparse.so.11: cannot open shared object file: "
         "No such file or directory", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1452"),
        ("OSError: libnvJitLink.so.13: cannot open shared object file: No such file or directory",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1905"),
        ("CUDA SETUP ERROR: Missing dependency: libnvJitLink.so.13",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1905"),
    ],
    "cuda-setup-failed": [
        ("RuntimeError: \n        CUDA Setup failed despite GPU being available. Please run the following command to "
         "get more information:\n\n        python -m bitsandbytes\n",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/966"),
        ("RuntimeError: \n        CUDA Setup failed despite GPU being available. Inspect the CUDA SETUP outputs above "
         "to fix your environment!", "https://github.com/LianjiaTech/BELLE/issues/376"),
        ("CUDA Setup failed despite CUDA being available. Please run the following command to get more "
         "information:", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1614"),
        ("CUDA SETUP: Setup Failed!", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/463"),
    ],
    "compiled-without-gpu": [
        ("UserWarning: The installed version of bitsandbytes was compiled without GPU support. 8-bit optimizers, "
         "8-bit multiplication, and GPU quantization are unavailable.",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/719"),
        ("'NoneType' object has no attribute 'cadam32bit_grad_fp32'",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/853"),
        ("function 'cadam32bit_grad_fp32' not found", "https://github.com/oobabooga/textgen/issues/3128"),
        ("RuntimeError: Method 'cquantize_blockwise_fp16_nf4' not available in CPU-only version of bitsandbytes.\n"
         "Reinstall with GPU support or use CUDA-enabled hardware.", f"{BNB}/0.46.1/bitsandbytes/cextension.py"),
    ],
    "no-kernel-image": [
        ("Error no kernel image is available for execution on the device at line 167 in file "
         "D:\\ai\\tool\\bitsandbytes\\csrc\\ops.cu", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/310"),
        ("RuntimeError: CUDA error: no kernel image is available for execution on the device",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/48"),
    ],
    "invalid-device-function": [
        ("Error invalid device function at line 508 in file "
         "/home/surfingtech/alpaca-lora-main/bitsandbytes-main/csrc/ops.cu", "https://github.com/tloen/alpaca-lora/issues/320"),
        ("Error invalid device function at line 679 in file /bitsandbytes/csrc/ops.hip",
         "https://github.com/ROCm/bitsandbytes/issues/29"),
        ("CUDA error: invalid device function", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/342"),
    ],
    "named-symbol-not-found": [
        ("Error named symbol not found at line 116 in file bitsandbytes/csrc/ops.cu",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/382"),
        ("Error named symbol not found at line 74 in file "
         "/mmfs1/gscratch/zlab/timdettmers/git/bitsandbytes/csrc/ops.cu",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/791"),
    ],
    "cuda-oom": [
        ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 8.00 GiB total "
         "capacity; 7.06 GiB already allocated; 0 bytes free; 7.29 GiB reserved in total by PyTorch)",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/307"),
        ("RuntimeError: CUDA out of memory. Tried to allocate 3.20 GiB (GPU 0; 22.20 GiB total capacity; "
         "18.38 GiB already allocated; 2.83 GiB free; 18.46 GiB reserved in total by PyTorch)",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/102"),
    ],
    "cpu-oom": [
        ("RuntimeError: [enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: you\n"
         "tried to allocate 268435456 bytes. Error code 12 (Cannot allocate memory)",
         "https://github.com/huggingface/transformers/issues/23016"),
        ("RuntimeError: [enforce fail at ..\\c10\\core\\CPUAllocator.cpp:72] data. DefaultCPUAllocator: not enough "
         "memory: you tried to allocate 16777216 bytes. Buy new RAM!", "https://github.com/agemagician/ProtTrans/issues/15"),
    ],
    "dispatched-to-cpu": [
        ("ValueError: Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM to fit the "
         "quantized model. If you want to dispatch the model on the CPU or the disk while keeping these modules in "
         "32-bit, you need to set `llm_int8_enable_fp32_cpu_offload=True` and pass a custom `device_map` to "
         "`from_pretrained`.", "https://github.com/unslothai/unsloth/issues/1629"),
        ("ValueError: \n                        Some modules are dispatched on the CPU or the disk. Make sure you have "
         "enough GPU RAM to fit\n                        the quantized mode l.",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/881"),
    ],
    "bnb-too-old": [
        ("ImportError: Using `bitsandbytes` 4-bit quantization requires bitsandbytes: "
         "`pip install -U bitsandbytes>=0.46.1`", "https://github.com/SuperDataScience-Community/ai-engineering/issues/9"),
        ("ImportError: Using `bitsandbytes` 4-bit quantization requires the latest version of bitsandbytes: "
         "`pip install -U bitsandbytes`", "https://github.com/SuperDataScience-Community/ai-engineering/issues/9"),
        ("ValueError: 4 bit quantization requires bitsandbytes>=0.39.0 - please upgrade your bitsandbytes version",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/815"),
        ("ImportError: Using `bitsandbytes` 8-bit quantization requires Accelerate: `pip install accelerate` and the "
         "latest version of bitsandbytes: `pip install -i https://pypi.org/simple/ bitsandbytes`",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1213"),
        ("AttributeError: module 'bitsandbytes.nn' has no attribute 'Linear4bit'",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/416"),
        ("ImportError: Using `load_in_8bit=True` requires Accelerate: `pip install accelerate` and "
         "the latest version of "
         "bitsandbytes `pip install -i https://test.pypi.org/simple/ bitsandbytes` or pip install bitsandbytes` ",
         "https://github.com/huggingface/transformers/blob/v4.26.0/src/transformers/modeling_utils.py"),
        ("ImportError: Using `bitsandbytes` 8-bit quantization requires the latest version of bitsandbytes: "
         "`pip install -U bitsandbytes`", "https://github.com/AIAnytime/Fine-Tune-DeepSeek/issues/1"),
    ],
    "bnb-not-installed": [
        ("ModuleNotFoundError: No module named 'bitsandbytes'", "https://github.com/gpustack/gpustack/issues/1963"),
        ("importlib.metadata.PackageNotFoundError: No package metadata was found for bitsandbytes",
         "https://github.com/huggingface/diffusers/issues/3194"),
    ],
    "accelerate-missing": [
        ("ImportError: Using `low_cpu_mem_usage=True` or a `device_map` requires Accelerate: "
         "`pip install 'accelerate>=0.26.0'`", "https://github.com/miaoshouai/ComfyUI-Miaoshouai-Tagger/issues/47"),
        ("ImportError: Using `low_cpu_mem_usage=True` or a `device_map` requires Accelerate: `pip install accelerate`",
         "https://github.com/QwenLM/Qwen3/issues/173"),
        # transformers/quantizers/quantizer_bnb_4bit.py (validate_environment), rendered
        ("ImportError: Using `bitsandbytes` 4-bit quantization requires Accelerate: `pip install 'accelerate>=0.26.0'`",
         "https://github.com/huggingface/transformers/blob/main/src/transformers/quantizers/quantizer_bnb_4bit.py"),
    ],
    "no-gpu": [
        ("RuntimeError: No GPU found. A GPU is needed for quantization.",
         "https://github.com/hiyouga/LlamaFactory/issues/4369"),
        ("AssertionError: Torch not compiled with CUDA enabled",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1254"),
    ],
    "device-not-supported": [
        ("None of the available devices `available_devices = None` are supported by the bitsandbytes version you have "
         "installed: `bnb_supported_devices = {'xpu', '\"cpu\" (needs an Intel CPU and intel_extension_for_pytorch "
         "installed and compatible with the PyTorch version)', 'cuda'}`.",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1627"),
        # transformers/integrations/bitsandbytes.py (validate_bnb_backend_availability)
        ("No supported devices found for bitsandbytes",
         "https://github.com/huggingface/transformers/blob/main/src/transformers/integrations/bitsandbytes.py"),
    ],
    "illegal-memory-access": [
        ("Error an illegal memory access was encountered at line 57 in file /src/csrc/ops.cu",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1782"),
        ("RuntimeError: CUDA error: an illegal memory access was encountered CUDA kernel errors "
         "might be asynchronously "
         "reported at some other API call", "https://github.com/RiseInRose/MiniGPT-4-ZH/issues/6"),
    ],
    "triton-needs-setuptools": [
        ('  File "/home/my_project/.venv/lib/python3.11/site-packages/triton/runtime/build.py", line 8, in <module>\n'
         "    import setuptools\nModuleNotFoundError: No module named 'setuptools'",
         "https://github.com/triton-lang/triton/issues/5090"),
        ('  File "/home/wukan/env-1.0.0/spack/opt/spack/linux-x86_64_v3/py-triton-3.2.0/lib/python3.12/site-packages/'
         'triton/runtime/driver.py", line 1, in <module>\n    from ..backends import backends\n'
         "ModuleNotFoundError: No module named 'setuptools'", "https://github.com/spack/spack-packages/pull/772"),
    ],
    "triton-ops-missing": [
        ("    from triton.ops.matmul_perf_model import early_config_prune, estimate_matmul_time\n"
         "ModuleNotFoundError: No module named 'triton.ops'", "https://github.com/triton-lang/triton/issues/5471"),
        ("When running the repo on master (after the HiDream merge) we're getting an error with triton:\n"
         "`No module named 'triton.ops'`", "https://github.com/ostris/ai-toolkit/issues/279"),
    ],
    "frozenset-device-check": [
        ('--> 499     available_devices.discard("cpu")  # Only Intel CPU is supported by BNB at the moment\n'
         "AttributeError: 'frozenset' object has no attribute 'discard'",
         "https://github.com/huggingface/transformers/issues/36371"),
        ('    available_devices.discard("cpu")\nAttributeError: \'frozenset\' object has no attribute \'discard\'',
         "https://github.com/huggingface/transformers/issues/36949"),
    ],
    "not-installable-together": [
        ("ERROR: ResolutionImpossible: for help visit "
         "https://pip.pypa.io/en/latest/user_guide/#fixing-conflicting-dependencies",
         "https://github.com/NeuralNine/neuralintents/issues/19"),
        ("[Bug]: ERROR: ResolutionImpossible - RuntimeError: Couldn't install torch.",
         "https://github.com/AUTOMATIC1111/stable-diffusion-webui/issues/17312"),
    ],
    "no-matching-release": [
        ("ERROR: Could not find a version that satisfies the requirement bitsandbytes==0.43.1 (from pyllmsearch) "
         "(from versions: 0.31.8, 0.32.0, 0.41.3.post2, 0.42.0)\nERROR: No matching distribution found for "
         "bitsandbytes==0.43.1", "https://github.com/snexus/llm-search/issues/121"),
        ("ERROR: No matching distribution found for bitsandbytes>=0.43.0",
         "https://github.com/huggingface/open-r1/issues/108"),
    ],
    "int8-matmul-failed": [
        ("raise Exception('cublasLt ran into an error!')", "https://github.com/Facico/Chinese-Vicuna/issues/3"),
        ("cuBLAS API failed with status 15\nA: torch.Size([16, 2048]), B: torch.Si",
         "https://github.com/oobabooga/textgen/issues/379"),
    ],
    "windows-unsupported": [
        ("CUDA SETUP: Loading binary "
         "C:\\Users\\hp\\anaconda3\\lib\\site-packages\\bitsandbytes\\libbitsandbytes_cpu.so...\n"
         "argument of type 'WindowsPath' is not iterable", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/305"),
        ("argument of type 'WindowsPath' is not iterable\nCUDA SETUP: Probl",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1641"),
    ],
    "cpu-needs-nf4": [
        # bitsandbytes/backends/cpu/ops.py, the torch._check in quantize_4bit
        ("RuntimeError: quant_type must be nf4 on CPU, got fp4",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/blob/main/bitsandbytes/backends/cpu/ops.py"),
        # as the committed CPU records of bnb 0.46.1 print it: a torch._check deep in the conversion, stderr only
        ("  File \".../bitsandbytes/backends/cpu/ops.py\", line 98, in _\n    torch._check(quant_type == \"nf4\", "
         "lambda: f\"quant_type must be nf4 on CPU, got {quant_type}\")\n...\nRuntimeError: "
         "quant_type must be nf4 on CPU, "
         "got fp4\nquant_type must be nf4 on CPU, got fp4\nError: Bnb4bitQuantize on tensors destined for "
         "model.layers.1.self_attn.v_proj.weight. Ckpt contains: 1", f"{BNB}/0.46.1/bitsandbytes/backends/cpu/ops.py"),
        # the Gaudi (HPU) backend of 0.48-0.49 has the same limit, worded without the device
        ("RuntimeError: quant_type must be nf4, got fp4", f"{BNB}/0.48.2/bitsandbytes/backends/hpu/ops.py"),
    ],
    "to-not-supported": [
        ("ValueError: `.to` is not supported for `4-bit` or `8-bit` bitsandbytes models. Please use "
         "the model as it is, "
         "since the model has already been set to the correct devices and casted to the correct `dtype`.",
         "https://github.com/zai-org/GLM-4-Voice/issues/152"),
        ("`.to` is not supported for `4-bit` or `8-bit` models.", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/547"),
        ("ValueError: You cannot cast a bitsandbytes model in a new `dtype`. Make sure to load the model using "
         "`from_pretrained` using the desired `dtype` by passing the correct `dtype` argument.",
         "https://github.com/huggingface/transformers/blob/main/src/transformers/modeling_utils.py"),
        ("ValueError: Calling `cuda()` is not supported for `4-bit` or `8-bit` quantized models. Please use the model "
         "as it is, since the model has already been set to the correct devices and casted to the correct `dtype`.",
         "https://github.com/huggingface/transformers/blob/v4.40.0/src/transformers/modeling_utils.py"),
        ("ValueError: Calling `cuda()` is not supported for `8-bit` quantized models.  Please use the model as it is, "
         "since the model has already been set to the correct devices.",
         "https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/modeling_utils.py"),
    ],
    "crash": [
        ("Fatal Python error: Segmentation fault\n\nCurrent thread 0x0000763bcdcde1c0 (most recent call first):",
         "https://github.com/sgl-project/sglang/issues/3778"),
        ("python test_bigdl_7B.py\nSegmentation fault (core dumped)", "https://github.com/intel/ipex-llm/issues/8939"),
        # a bare "Segmentation fault", without the shell's "(core dumped)"
        ("I got a segmentation fault when I ran llama-13b-4bit-128g with the following arguments:",
         "https://github.com/oobabooga/textgen/issues/972"),
    ],
    # signatures added from the second round of real pastes (issue 23); texts from matrix/diagnose/data
    "glibc-too-old": [
        ("Could not load bitsandbytes native library: /lib64/libc.so.6: version `GLIBC_2.34' not found (required by "
         "/home/it4i-chang505/.local/lib/python3.11/site-packages/bitsandbytes/libbitsandbytes_cuda128.so)",
         "https://github.com/AnswerDotAI/fsdp_qlora/issues/76"),
        ("OSError: /lib64/libstdc++.so.6: version `CXXABI_1.3.9' not found (required by /extradata/hf_env/lib/"
         "python3.9/site-packages/bitsandbytes/libbitsandbytes_cuda114_nocublaslt.so)",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/70"),
        ("< /bitsandbytes/libbitsandbytes_cpu.so: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.29' not "
         "found (required by /bitsandbytes/libbitsandbytes_cpu.so)",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/pull/1113"),
    ],
    "libcuda-not-found": [
        ("CUDA SETUP: WARNING! libcuda.so not found! Do you have a CUDA driver installed? If you are on a cluster, "
         "make sure you are on a CUDA machine!", "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/243"),
        ("#16 1.968 CUDA SETUP: CUDA runtime path found: /usr/local/cuda/lib64/libcudart.so\n#16 1.968 CUDA SETUP: "
         "WARNING! libcuda.so not found! Do you have a CUDA driver installed?",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/81"),
    ],
    "rocm-undefined-symbol": [
        ("well, `libbitsandbytes_rocm62.so: undefined symbol: "
         "_Z36__device_stub__kOptimizer32bit1StateI12hip_bfloat16Li2EEvPT_S2_PfS3_ffffffiffbi`",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1508"),
        ("Could not load bitsandbytes native library: /home/loong/miniconda3/envs/geneformer/lib/python3.11/"
         "site-packages/bitsandbytes/libbitsandbytes_rocm62.so: undefined symbol: "
         "_Z36__device_stub__kOptimizer32bit1StateI12hip_bfloat16Li2EEvPT_S2_PfS3_ffffffiffbi",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1550"),
    ],
    "scipy-missing": [
        ("I got the error `ModuleNotFoundError: No module named 'scipy'`.",
         "https://github.com/tloen/alpaca-lora/issues/488"),
        ("LORA Training error ( ./train_network.py FAILED | ModuleNotFoundError: No module named 'scipy' )",
         "https://github.com/bmaltais/kohya_ss/issues/1921"),
    ],
    "requantize-uint8": [
        ("!!! ERROR during execution: Blockwise quantization only supports 16/32-bit floats, but got torch.uint8",
         "https://github.com/lum3on/comfyui_HiDream-Sampler/issues/49"),
        ("[PROC-0][2024-04-02 16:44:30,465][experiment][ERROR] - Error during backend allocation: Blockwise "
         "quantization only supports 16/32-bit floats, but got torch.uint8",
         "https://github.com/huggingface/optimum-benchmark/issues/175"),
    ],
    "quantized-no-adapters": [
        ("ValueError: You cannot perform fine-tuning on purely quantized models. Please attach trainable adapters on "
         "top of the quantized model to correctly perform fine-tuning.", "https://github.com/unslothai/unsloth/issues/241"),
        ("When I use 8-bit quantization in the pre-training process, the code throws an error.\n\nYou cannot perform "
         "fine-tuning on purely quantized models.", "https://github.com/BAAI-DCAI/Bunny/issues/112"),
    ],
}

WARNING_SAMPLES: dict[str, list[tuple[str, str]]] = {
    "slow-fp32-compute": [
        ("UserWarning: Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
         "(default). This will lead to slow inference or training speed.\n  warnings.warn(",
         "https://github.com/bigcode-project/bigcode-evaluation-harness/issues/192"),
        ("UserWarning: Input type into Linear4bit is torch.float16, but bnb_4bit_compute_type=torch.float32 (default). "
         "This will lead to slow inference or training speed.", "https://github.com/h2oai/h2ogpt/pull/682"),
    ],
    "bnb-cuda-version-override": [
        ("WARNING: BNB_CUDA_VERSION=124 environment variable detected; loading libbitsandbytes_cuda124.so.\n"
         "This can be used to load a bitsandbytes version that is different from the PyTorch CUDA version.",
         "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1559"),
        ("WARNING: BNB_CUDA_VERSION=121 environment variable detected; loading "
         "libbitsandbytes_cuda121_nocublaslt121.so.",
         "https://github.com/unslothai/unsloth/issues/412"),
        # bnb 0.50: also BNB_ROCM_VERSION, and a new second line
        ("WARNING: BNB_ROCM_VERSION=72 environment variable detected; loading libbitsandbytes_rocm72.so.\n"
         "This overrides automatic ROCm version selection.\nIf this was unintended clear the variable and retry: "
         "unset BNB_ROCM_VERSION", f"{BNB}/0.50.2/bitsandbytes/cextension.py"),
    ],
}

# Texts that mention the words of a signature without being that failure: (text, slug it must NOT get, why).
NEAR_MISSES = [
    ("RuntimeError: [enforce fail at alloc_cpu.cpp:73] . DefaultCPUAllocator: can't allocate memory: you tried to "
     "allocate 116813856768 bytes. Error code 12 (Cannot allocate memory)", "cuda-oom", "host RAM, not the GPU"),
    ("RuntimeError: MPS backend out of memory (MPS allocated: 9.03 GB, other allocations: 1.2 GB)", "cuda-oom",
     "Apple GPU"),
    ("Out of memory: Killed process 4242 (python) total-vm:81234567kB", "cuda-oom", "the kernel's OOM killer"),
    ("CUDA SETUP: Loading binary /usr/local/lib/python3.10/dist-packages/bitsandbytes/libbitsandbytes_cuda118.so...",
     "native-library-missing", "a passing log naming the library path"),
    ("Loading bitsandbytes native library from: "
     "/venv/lib/python3.12/site-packages/bitsandbytes/libbitsandbytes_cuda126.so",
     "native-library-missing", "bitsandbytes' debug line on a good load"),
    ("CUDA_SETUP: WARNING! libcudart.so not found in any environmental path. Searching in backup paths...",
     "cuda-runtime-missing", "a search step that usually succeeds later"),
    ("ModuleNotFoundError: No module named 'bitsandbytes.cuda_setup'", "cuda-setup-failed",
     "a broken install (bnb-not-installed covers it), not a failed CUDA setup"),
    # issue 23: texts with the words of a new signature from other software
    ("ImportError: /usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.29' not found (required by "
     "/opt/conda/envs/py38/lib/python3.8/site-packages/scipy/spatial/_ckdtree.cpython-38-x86_64-linux-gnu.so)",
     "glibc-too-old", "scipy's own extension, not bitsandbytes (NVlabs/BundleSDF#185)"),
    ("runtime.cpython-38-x86_64-linux-gnu.so: undefined symbol: _Z22hipCreateSurfaceObjectPyPK15hipResourceDesc, "
     "version hip_4.2", "rocm-undefined-symbol", "cupy's ROCm build, not bitsandbytes (cupy/cupy#7358)"),
    ("ModuleNotFoundError: No module named 'scipy.stats.norm'", "scipy-missing",
     "a wrong import path, scipy is installed"),
    ("ValueError: Blockwise quantization only supports 16/32-bit floats, but got torch.bfloat16",
     "requantize-uint8", "bfloat16 on an old release, not already-quantized weights"),
    ("warning: one possible reason is that llama.cpp was compiled without GPU support", "compiled-without-gpu",
     "llama.cpp, not bitsandbytes"),
    ("RuntimeError: Not compiled with GPU support", "compiled-without-gpu", "a detectron2/pytorch3d extension"),
    ("CUDA SETUP: Required library version not found: libsbitsandbytes_cpu.so. Maybe you need to "
     "compile it from source?",
     "native-library-missing", "legacy Windows: a CPU-only torch, not a missing CUDA binary"),
    ("AttributeError: 'NoneType' object has no attribute 'cuda'", "cuda-setup-failed", "ordinary user-code bug"),
    ("Input type into Linear4bit is torch.bfloat16, compute dtype torch.bfloat16", "slow-fp32-compute",
     "no slowdown here"),
    # real wordings from bnb sources that share words with a signature
    ("RuntimeError: quant_type must be nf4 or fp4, got int4", "cpu-needs-nf4",
     "bnb 0.47+ backends/default/ops.py: an invalid type, not the CPU limit"),
    ("No prebuilt binary for CUDA 12.9, loading CUDA 12.8 instead. Set BNB_CUDA_VERSION to override.",
     "native-library-missing", "bnb 0.50 picked a same-major binary; the load goes on"),
    ("The 8-bit optimizer is not available on your device, only available on CUDA for now.", "compiled-without-gpu",
     "bnb 0.47 on CPU: an optimizer note, not a missing GPU library"),
]


def catalogue() -> dict[str, Signature]:
    return default_catalogue()


# ---------------------------------------------------------------------------------------------------------
# the catalogue itself


def test_catalogue_loads_with_required_slugs() -> None:
    cat = load_catalogue()
    required = {"native-library-missing", "cuda-runtime-missing", "cuda-setup-failed", "compiled-without-gpu",
                "no-kernel-image", "invalid-device-function", "named-symbol-not-found", "cuda-oom",
                "dispatched-to-cpu", "bnb-too-old", "bnb-not-installed", "no-gpu", "cpu-needs-nf4",
                "to-not-supported", "slow-fp32-compute", "crash", "timeout", "unclassified"}
    assert required <= set(cat)
    assert cat["slow-fp32-compute"].kind == "warning"
    assert all(isinstance(f, Fix) for s in cat.values() for f in s.fixes)


def test_slugs_are_kebab_case_and_unique() -> None:
    raw = tomllib.loads(DEFAULT_CATALOGUE.read_text(encoding="utf-8"))["signatures"]
    slugs = list(raw)
    assert len(slugs) == len(set(slugs))
    for slug in slugs:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug), slug
        assert len(slug) <= 40
    # a slug is also a path segment of its permanent URL
    from matrix.urls import error_path
    assert all(error_path(s) == f"errors/{s}/" for s in slugs)


def test_fix_recipes_name_measured_recipes() -> None:
    named = [f.recipe for s in catalogue().values() for f in s.fixes if f.recipe]
    assert named, "some fixes are measured recipes"
    from matrix.measure.axes import load_axes
    assert set(named) <= set(load_axes().recipes)  # the recipes come from the axes file, balanced included
    with pytest.raises(UserError, match="names"):
        load_catalogue(DEFAULT_CATALOGUE, recipes=("plain",))


def test_every_signature_is_documented() -> None:
    for sig in catalogue().values():
        assert sig.title and sig.cause and sig.fixes, sig.slug
        assert 2 <= len(re.findall(r"[.!?](\s|$)", sig.cause)) <= 4, sig.slug  # 2-4 sentences
        assert all(url.startswith("https://") for url in sig.references), sig.slug
        if sig.slug not in (TIMEOUT, UNCLASSIFIED):
            assert sig.references and sig.messages, sig.slug


def test_every_catalogue_message_classifies_to_its_own_signature() -> None:
    for sig in catalogue().values():
        for message in sig.messages:
            if sig.kind == "error":
                assert classify("", message) == sig.slug, (sig.slug, message)
            else:
                assert sig.slug in find_warnings(message), (sig.slug, message)


# ---------------------------------------------------------------------------------------------------------
# real samples and near misses


def test_every_signature_has_two_real_samples() -> None:
    have = {**SAMPLES, **WARNING_SAMPLES}
    for slug in catalogue():
        if slug in (TIMEOUT, UNCLASSIFIED):
            continue  # given by outcome / as the fallback: see test_outcome_rules
        assert len(have.get(slug, [])) >= 2, f"{slug} needs two real samples"
        assert all(url.startswith("https://github.com/") for _, url in have[slug])
        assert len({text for text, _ in have[slug]}) == len(have[slug])


@pytest.mark.parametrize("slug,text,url", [(s, t, u) for s, items in SAMPLES.items() for t, u in items],
                         ids=[f"{s}-{i}" for s, items in SAMPLES.items() for i in range(len(items))])
def test_real_sample_classifies(slug: str, text: str, url: str) -> None:
    assert classify("", text) == slug, url
    assert classify("", "", stderr=text) == slug, url  # the same text printed to stderr


@pytest.mark.parametrize("slug,text,url", [(s, t, u) for s, items in WARNING_SAMPLES.items() for t, u in items],
                         ids=[f"{s}-{i}" for s, items in WARNING_SAMPLES.items() for i in range(len(items))])
def test_real_warning_sample_found(slug: str, text: str, url: str) -> None:
    assert find_warnings(text) == [slug], url
    assert classify("", text) == UNCLASSIFIED  # a warning alone is not an error


@pytest.mark.parametrize("text,forbidden,why", NEAR_MISSES,
                         ids=[f"not-{f}-{i}" for i, (_, f, _) in enumerate(NEAR_MISSES)])
def test_near_miss(text: str, forbidden: str, why: str) -> None:
    assert classify("", text) != forbidden, why
    assert forbidden not in find_warnings(text), why


def test_near_misses_mostly_fall_through() -> None:
    falls = [classify("", t) for t, _, _ in NEAR_MISSES]
    assert falls.count(UNCLASSIFIED) >= len(NEAR_MISSES) - 3
    assert classify("", NEAR_MISSES[0][0]) == "cpu-oom"


# ---------------------------------------------------------------------------------------------------------
# root cause over generic re-raise


ROOT_CAUSE_STDERR = (
    "Could not find the bitsandbytes CUDA binary at PosixPath('/venv/lib/python3.12/site-packages/bitsandbytes/"
    "libbitsandbytes_cuda130.so')\nThe installed version of bitsandbytes was compiled without GPU support.\n")


def test_generic_reraise_yields_to_stderr_root_cause() -> None:
    generic = "Something when wrong when trying to find file."
    assert classify("RuntimeError", generic) == UNCLASSIFIED
    assert classify("RuntimeError", generic, ROOT_CAUSE_STDERR) == "native-library-missing"


def test_weight_conversion_rerase_yields_to_the_report_above_it() -> None:
    # transformers 5 logs a LOAD REPORT (with ANSI bold) and then re-raises this generic error
    generic = ("We encountered some issues during automatic conversion of the weights. For details look at the "
               "`CONVERSION` entries of the above report!")
    report = ("\x1b[1mLlamaForCausalLM LOAD REPORT\x1b[0m from: /tmp/tiny\n| CONVERSION | model.layers.0.mlp | "
              "RuntimeError: Configured CUDA binary not found at /venv/bitsandbytes/libbitsandbytes_cuda131.so |\n")
    assert classify("RuntimeError", generic) == UNCLASSIFIED
    assert classify("RuntimeError", generic, report) == "native-library-missing"
    oom_report = report.replace("RuntimeError: Configured CUDA binary not found at /venv/bitsandbytes/"
                                "libbitsandbytes_cuda131.so", "torch.OutOfMemoryError: CUDA out of memory.")
    assert classify("RuntimeError", generic, oom_report) == "cuda-oom"


def test_specific_cause_beats_the_umbrella_error() -> None:
    umbrella = "CUDA Setup failed despite GPU being available. Please run the following command to get more information"
    assert classify("RuntimeError", umbrella) == "cuda-setup-failed"
    assert classify("RuntimeError", umbrella,
                    "libcusparse.so.11: cannot open shared object file: No such file or "
                    "directory") == "cuda-runtime-missing"
    assert classify("AttributeError", "'NoneType' object has no attribute 'cquantize_blockwise_fp16_nf4'",
                    ROOT_CAUSE_STDERR) == "native-library-missing"


def test_cpu_only_torch_beats_the_cpu_library_warning() -> None:
    # bitsandbytes #397: the CPU-library warning is a symptom; torch without CUDA is the cause
    stderr = ("CUDA SETUP: Required library version not found: libsbitsandbytes_cpu.so. Maybe you need to compile "
              "it from source?\nUserWarning: The installed version of bitsandbytes was compiled without GPU support.")
    assert classify("AssertionError", "Torch not compiled with CUDA enabled", stderr) == "no-gpu"


def test_fallback_only_when_nothing_specific_matches() -> None:
    cat = catalogue()
    assert {s.slug for s in cat.values() if s.fallback} == {"cuda-setup-failed", "crash"}
    umbrella = "RuntimeError: CUDA Setup failed despite GPU being available."
    glibc = ("Could not load bitsandbytes native library: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not "
             "found (required by /venv/bitsandbytes/libbitsandbytes_cuda126.so)")
    assert classify("", umbrella) == "cuda-setup-failed"
    assert classify("", umbrella, glibc) == "glibc-too-old"
    # a low-priority specific cause still beats a fallback of higher priority
    assert cat["crash"].priority < cat["to-not-supported"].priority  # and: fallbacks never outrank, whatever it is
    aborted = "int igemmlt(...): Assertion `false' failed.\nAborted (core dumped)"
    assert classify("", aborted) == "int8-matmul-failed"
    assert classify("", "Segmentation fault") == "crash"


def test_exception_breaks_priority_ties() -> None:
    cat = catalogue()
    assert cat["cuda-oom"].priority == cat["dispatched-to-cpu"].priority
    oom, dispatched = SAMPLES["cuda-oom"][0][0], SAMPLES["dispatched-to-cpu"][0][0]
    assert classify("", oom, stderr=dispatched) == "cuda-oom"
    assert classify("", dispatched, stderr=oom) == "dispatched-to-cpu"


# ---------------------------------------------------------------------------------------------------------
# outcomes and records


def test_outcome_rules() -> None:
    assert classify("", "", outcome="timeout") == TIMEOUT
    # killed: the timeout is the fact
    assert classify("RuntimeError", "CUDA out of memory.", outcome="timeout") == TIMEOUT
    assert classify("Signal", "recipe process died with SIGKILL", outcome="crash") == CRASH
    assert classify("Signal", "died", "torch.OutOfMemoryError: CUDA out of memory.", outcome="crash") == "cuda-oom"
    assert classify("RuntimeError", "boom") == UNCLASSIFIED
    assert classify("", "") == UNCLASSIFIED


def test_fixture_records() -> None:
    read = list(iter_file(FIXTURES / "records.jsonl"))
    records = [r for r in read if isinstance(r, Record)]
    assert len(records) == len(read)  # no problem lines
    by_outcome: dict[str, set] = {}
    for r in records:
        by_outcome.setdefault(r.outcome, set()).add(classify_record(r))
    assert by_outcome["pass"] == {None} and by_outcome["skip"] == {None}
    assert by_outcome["crash"] == {CRASH} and by_outcome["timeout"] == {TIMEOUT}
    # (a superset: other engineers may add fixture records)
    assert by_outcome["fail"] >= {"bnb-too-old", UNCLASSIFIED, "native-library-missing", "cuda-oom"}
    cpu_old = next(r for r in records if r.versions.get("bitsandbytes") == "0.45.5")
    assert classify_record(cpu_old) == "bnb-too-old"
    # transformers words "missing" and "too old" the same; the record's installed versions tell them apart
    missing = dataclasses.replace(cpu_old, versions={**cpu_old.versions, "bitsandbytes": None})
    assert classify_record(missing) == "bnb-not-installed"


# What a person reading the records' exception and stderr judged each known failure in results/ to be.
# (runner slug, installed bitsandbytes) -> slug. Records added later are checked by the next test only.
# (runner, bitsandbytes, transformers major) -> the root cause a maintainer gives every failure
RESULTS_JUDGED: dict[tuple[str, str, str], str | set[str]] = {
    # transformers 5.17/5.24 refuse bnb < 0.46.1 in validate_environment (the CPU one also warns about the CPU lib);
    # on the cu130 torch 0.45.5 also has no library: probe v3 imports bitsandbytes first, so its warning is in stderr
    # too and both causes are present (either is right; upgrading bitsandbytes to >= 0.48.2 mends both)
    ("h100-sm90", "0.45.5", "5"): {"bnb-too-old", "native-library-missing"},
    ("cpu-x86_64", "0.45.5", "5"): "bnb-too-old",
    # transformers 4.57 lets 0.45.5 through; on a cu130 torch it loads its CPU library: undefined symbol
    ("h100-sm90", "0.45.5", "4"): "native-library-missing",
    # cu130 torch, bnb 0.46.1/0.47.0 ship no CUDA 13 library: CUDA VERSION MISMATCH under a generic re-raise
    ("h100-sm90", "0.46.1", "5"): "native-library-missing",
    ("h100-sm90", "0.46.1", "4"): "native-library-missing",
    ("h100-sm90", "0.47.0", "5"): "native-library-missing",
    ("h100-sm90", "0.47.0", "4"): "native-library-missing",
    # plain/seed-fix ask for FP4; the 0.46.1 CPU backend quantizes NF4 only (nf4-bf16 passes)
    ("cpu-x86_64", "0.46.1", "5"): "cpu-needs-nf4",
}


def _failed_results() -> list:
    if not RESULTS.is_dir():
        pytest.skip("no results/ directory in this checkout")
    found, _ = read_results(RESULTS)
    failed = [r for r in found if r.outcome not in ("pass", "skip")]
    if not failed:
        pytest.skip("no failed records in results/")
    return failed


def test_every_failed_record_in_results_has_a_signature() -> None:
    offenders = []
    for r in _failed_results():
        if classify_record(r) == UNCLASSIFIED:
            offenders.append(f"{r.run_id} {'/'.join(r.cell_key)} {r.recipe}/{r.shape}: {r.error_type}: "
                             f"{r.error_message.strip()[:160]!r}")
    assert not offenders, ("failed records in results/ that no signature matches (read their stderr_tail and add "
                           "a signature or pattern):\n" + "\n".join(offenders))


def test_known_failures_in_results_keep_their_judged_signature() -> None:
    wrong = []
    for r in _failed_results():
        major = str(r.requested.get("transformers", "")).split(".")[0]
        key = (r.runner.get("slug"), r.versions.get("bitsandbytes"), major)
        judged = RESULTS_JUDGED.get(key)
        if judged is not None and classify_record(r) not in ({judged} if isinstance(judged, str) else judged):
            wrong.append(f"{r.run_id} {key} {r.recipe}/{r.shape}: {classify_record(r)} != {RESULTS_JUDGED[key]}")
    assert not wrong, "\n".join(wrong)


def test_classify_record_tolerates_odd_objects() -> None:
    class Odd:
        outcome = "fail"
        error_type = None
        error_message = b"CUDA out of memory"
        stderr_tail = 12345
        versions = "not a dict"

    assert classify_record(Odd()) == "cuda-oom"
    assert classify_record(object()) == UNCLASSIFIED


def test_find_warnings_on_passing_stderr() -> None:
    stderr = ("Loading checkpoint shards: 100%|##########| 2/2\n/venv/lib/python3.11/site-packages/bitsandbytes/nn/"
              "modules.py:451: UserWarning: Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype="
              "torch.float32 (default). This will lead to slow inference or training speed.\n  warnings.warn(\n")
    assert find_warnings(stderr) == ["slow-fp32-compute"]
    assert find_warnings("") == []
    assert find_warnings(None) == []  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# hostile input


def test_normalise() -> None:
    assert normalise("\x1b[31mValueError\x1b[0m:  `.to`\n  is 'not'") == "ValueError: .to is not"
    assert normalise(None) == "" and normalise(b"\xff\xfeabc").endswith("abc")
    assert len(normalise("x" * 200_000, 1000)) == 1000


def test_ansi_coloured_traceback_still_matches() -> None:
    coloured = ("\x1b[0;31mOutOfMemoryError\x1b[0m: CUDA out of memory. Tried to allocate 20.00 MiB\n"
                "\\u001b[38;5;241m  File x\\u001b[39m")
    assert classify("", coloured) == "cuda-oom"


@pytest.mark.parametrize("text", [
    "\ud800\udfff lone surrogates \udcff Configured CUDA binary not found",
    "\x00\x01\x02" * 1000,
    "(" * 50_000 + "a" * 50_000,
    "Some modules are dispatched" + " " * 100_000 + "on the CPU",
    "could not find module " + "x" * 200_000,
    "libbitsandbytes_" + "w" * 100_000 + ".so",
    "a" * 5_000_000,
], ids=["surrogates", "control-chars", "open-parens", "wide-gap", "long-module-path", "long-library-name", "5MB"])
def test_never_raises_and_stays_fast(text: str) -> None:
    start = time.perf_counter()
    slug = classify("E" * 10_000, text, text, "fail")
    find_warnings(text)
    assert isinstance(slug, str) and slug in catalogue()
    assert time.perf_counter() - start < 2.0


def test_huge_stderr_is_capped_to_its_tail() -> None:
    stderr = "CUDA out of memory.\n" + "noise line\n" * 100_000 + "Configured CUDA binary not found at /x.so\n"
    assert classify("RuntimeError", "generic", stderr) == "native-library-missing"  # the OOM is beyond the cap


def test_random_text_never_raises() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(st.text(), st.text(), st.text(), st.sampled_from(["fail", "crash", "timeout", "pass", "x"]))
    def check(error_type: str, message: str, stderr: str, outcome: str) -> None:
        assert classify(error_type, message, stderr, outcome) in catalogue()
        assert set(find_warnings(stderr)) <= set(catalogue())

    check()


# ---------------------------------------------------------------------------------------------------------
# a malformed catalogue: one line, naming the file and key, saying what is allowed

GOOD = '''schema = 1
[signatures.crash]
title = "t"
kind = "error"
patterns = ["segmentation fault"]
cause = "c."
[[signatures.crash.fixes]]
title = "f"
[signatures.timeout]
title = "t"
cause = "c."
[[signatures.timeout.fixes]]
title = "f"
[signatures.unclassified]
title = "t"
cause = "c."
[[signatures.unclassified.fixes]]
title = "f"
'''


def test_minimal_catalogue_loads(tmp_path: Path) -> None:
    path = tmp_path / "sig.toml"
    path.write_text(GOOD)
    cat = load_catalogue(path)
    assert list(cat) == ["crash", "timeout", "unclassified"]
    assert classify("", "Segmentation fault", catalogue=cat) == "crash"


@pytest.mark.parametrize("edit,key", [
    (lambda t: t.replace('patterns = ["segmentation fault"]', 'patterns = ["(unclosed"]'),
     "signatures.crash.patterns[0]"),
    (lambda t: t.replace('patterns = ["segmentation fault"]', r'patterns = ["(\\w+)+x"]'),
     "signatures.crash.patterns[0]"),
    (lambda t: t.replace('kind = "error"', 'kind = "fatal"'), "signatures.crash.kind"),
    (lambda t: t.replace('[[signatures.crash.fixes]]\ntitle = "f"',
                         '[[signatures.crash.fixes]]\ntitle = "f"\nrecipe = "magic"'),
     "signatures.crash.fixes[0].recipe"),
    (lambda t: t.replace('[signatures.crash]\ntitle = "t"', '[signatures.crash]\ntitle = ""'),
     "signatures.crash.title"),
    (lambda t: t + '[signatures.Bad_Slug]\ntitle = "t"\n', "signatures.Bad_Slug"),
    (lambda t: t + '[signatures.no-patterns]\ntitle = "t"\ncause = "c."\n'
                   '[[signatures.no-patterns.fixes]]\ntitle = "f"\n',
     "signatures.no-patterns.patterns"),
    (lambda t: t.replace('cause = "c."\n[[signatures.crash', 'cause = "c."\nmessages = ["hello"]\n[[signatures.crash'),
     "signatures.crash.messages[0]"),
    (lambda t: t.replace('[signatures.timeout]', '[signatures.timeout-x]\npatterns = ["x"]').replace(
        'signatures.timeout.fixes', 'signatures.timeout-x.fixes'), "signatures.timeout: is missing"),  # reserved slug
    (lambda t: t.replace("schema = 1", "schema = 9"), "schema"),
    (lambda t: t + "[signatures.crash]\ntitle = \"again\"\n", ""),  # a slug defined twice is invalid TOML
    (lambda t: t.replace('title = "f"', 'title = "f"\nwhat = 1', 1), "signatures.crash.fixes[0].what"),
    (lambda t: t + "[[[", ""),
])
def test_malformed_catalogue_gives_one_line_user_error(tmp_path: Path, edit, key: str) -> None:
    path = tmp_path / "sig.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(UserError) as info:
        load_catalogue(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(str(path))
    assert key in line
    if key:
        assert "allowed:" in line


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_catalogue(tmp_path / "nope.toml")

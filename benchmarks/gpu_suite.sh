#!/usr/bin/env bash
# Every GPU figure of the production renderer, in one command, into one folder:
#
#     benchmarks/gpu_suite.sh OUT_DIR
#
# Run from the repository root with the venv active, on a machine with a CUDA
# device; onnxruntime-gpu (pip install -e '.[gpu]') for the ONNX Runtime rows.
# Writes to OUT_DIR:
#   environment.json              torch / CUDA / GPU / onnxruntime versions and providers
#   test_gpu.xml, test_gpu.txt    tests/render/test_gpu.py (fp16/bf16 + compiled executor +
#                                 channels_last vs fp32 eager, no host sync, ONNX executor on
#                                 ORT's CUDA provider with IO binding)
#   sdturbo_fp16.json/.md         SD-Turbo-size model at 512², float16, 1/2/4 steps, VAE and
#                                 tiny AE: stock diffusers pipeline, then rt_recon's renderer
#                                 with each executor: torch eager, torch compiled (CUDA graphs,
#                                 with compile time), ONNX Runtime
#   sdturbo_fp16_channels_last.json/.md   the same torch executors with channels_last weights
# Each step runs even if an earlier one failed; the exit status is non-zero if any did.
# Expect roughly 10-20 minutes on one H100-class GPU (most of it compiling and exporting).
set -uo pipefail

out=${1:?usage: benchmarks/gpu_suite.sh OUT_DIR}
mkdir -p "$out"
failed=0
repeats=${REPEATS:-20}

python - >"$out/environment.json" <<'EOF' || failed=1
import json, platform
import torch
info = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version(),
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
}
try:
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    info["ort_providers"] = ort.get_available_providers()
except ImportError:
    info["onnxruntime"] = None
print(json.dumps(info, indent=2))
EOF

pytest -m gpu -p no:cacheprovider -rs tests/render/test_gpu.py --junitxml "$out/test_gpu.xml" \
    2>&1 | tee "$out/test_gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1

python -m benchmarks.bench_render_sdturbo --device cuda --dtype float16 --steps 1 2 4 \
    --compile --onnx --repeats "$repeats" --warmup 3 --json "$out/sdturbo_fp16.json" \
    2>&1 | tee "$out/sdturbo_fp16.md"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1

python -m benchmarks.bench_render_sdturbo --device cuda --dtype float16 --steps 1 2 4 \
    --compile --channels-last --repeats "$repeats" --warmup 3 \
    --json "$out/sdturbo_fp16_channels_last.json" 2>&1 | tee "$out/sdturbo_fp16_channels_last.md"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1

exit "$failed"

#!/usr/bin/env bash
# Every GPU figure of the production renderer, in one command, into one folder:
#
#     benchmarks/gpu_suite.sh OUT_DIR
#
# Run from the repository root with the project installed (`pip install -e '.[gpu]'`;
# PYTHONPATH alone does not do: rt_recon.simulators and rt_recon.configs are mapped from
# top-level folders), on a machine with a CUDA device. The ONNX Runtime rows need
# onnxruntime-gpu; where onnxruntime has no CUDA provider they are skipped and the log says so.
# Results of a run on an H200: docs/performance.md, "On a GPU".
# Writes to OUT_DIR, in this order (most wanted first, so a cut-off run still says most):
#   environment.json              torch / CUDA / GPU / onnxruntime versions and providers
#   test_gpu.xml, test_gpu.txt    tests/render/test_gpu.py (fp16/bf16 + compiled executor +
#                                 channels_last vs fp32 eager, no host sync, ONNX executor on
#                                 ORT's CUDA provider with IO binding)
#   e2e_cuda.json/.md             benchmarks/bench_e2e.py with the renderer on the GPU
#                                 (embedded model, float16): per-stage p50/p95 over the replay
#   sdturbo_fp16.json/.md         SD-Turbo-size model at 512², float16, 1/2/4 steps, VAE and
#                                 tiny AE: stock diffusers pipeline, rt_recon's renderer with
#                                 torch eager (and ONNX Runtime where ORT has CUDA)
#   sdturbo_fp16_compiled.json/.md   the same with the torch.compile'd executor (CUDA
#                                 graphs, compile time reported) at COMPILE_STEPS steps
#   sdturbo_fp16_channels_last.json/.md   eager with channels_last weights
# Each step runs under its own time limit (seconds, environment variables T_TESTS, T_E2E,
# T_EAGER, T_COMPILED, T_CL) even if an earlier one failed; the exit status is non-zero if
# any failed or ran out of time.
set -uo pipefail

out=${1:?usage: benchmarks/gpu_suite.sh OUT_DIR}
mkdir -p "$out"
failed=0
repeats=${REPEATS:-20}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

step() {  # step NAME SECONDS LOG COMMAND...: run COMMAND under a time limit, log to OUT_DIR
    local name=$1 limit=$2 log=$3
    shift 3
    echo "== $name (limit ${limit} s) $(date -u +%T)" | tee -a "$out/suite.log"
    local start=$SECONDS
    timeout --kill-after 10 "$limit" "$@" 2>&1 | tee "$out/$log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/suite.log"
    [ "$rc" -eq 0 ] || failed=1
}

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
cat "$out/environment.json"

onnx=()
if python -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
    onnx=(--onnx)
else
    echo "== onnxruntime has no CUDA provider here: ONNX Runtime rows skipped" | tee -a "$out/suite.log"
fi

step "GPU tests" "${T_TESTS:-300}" test_gpu.txt \
    pytest -m gpu -p no:cacheprovider -rs tests/render/test_gpu.py --junitxml "$out/test_gpu.xml" \
    -o addopts=""

step "end to end, renderer on cuda" "${T_E2E:-300}" e2e_cuda.md \
    python -m benchmarks.bench_e2e --speed "${E2E_SPEED:-4}" --set renderer.device=cuda \
    --set renderer.dtype=float16 --json "$out/e2e_cuda.json"

step "SD-Turbo size, float16, eager" "${T_EAGER:-300}" sdturbo_fp16.md \
    python -m benchmarks.bench_render_sdturbo --device cuda --dtype float16 --steps 1 2 4 \
    "${onnx[@]}" --repeats "$repeats" --warmup 3 --json "$out/sdturbo_fp16.json"

step "SD-Turbo size, float16, compiled" "${T_COMPILED:-600}" sdturbo_fp16_compiled.md \
    python -m benchmarks.bench_render_sdturbo --device cuda --dtype float16 \
    --steps ${COMPILE_STEPS:-1 2 4} --compile --repeats "$repeats" --warmup 3 \
    --json "$out/sdturbo_fp16_compiled.json"

step "SD-Turbo size, float16, channels_last" "${T_CL:-300}" sdturbo_fp16_channels_last.md \
    python -m benchmarks.bench_render_sdturbo --device cuda --dtype float16 --steps 1 2 4 \
    --channels-last --repeats "$repeats" --warmup 3 \
    --json "$out/sdturbo_fp16_channels_last.json"

exit "$failed"

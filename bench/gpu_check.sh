#!/usr/bin/env bash
# The GPU checks of seem_ros as one run on a CUDA machine, from the repository root:
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default bench/results)
#
# 1. the CUDA tests of test/unit/test_export_onnx.py (torch-cuda CUDA-graph encoder against
#    eager; onnxruntime-cuda against CPU where onnxruntime-gpu is installed);
# 2. bench/latency.py on every backend the machine has (torch-cuda; onnxruntime-cuda and
#    tensorrt where installed, skipped with the reason elsewhere), tiny and Focal-T at 640x480
#    and 1280x720, fp32 and fp16 -> OUT_DIR/latency_gpu_fp32.json, OUT_DIR/latency_gpu_fp16.json.
#
# Needs Python 3.10+ with torch (CUDA), numpy, Pillow, onnx, onnxruntime, scipy, opencv and the
# CLIP vocabulary (open_clip_torch, installed with --no-deps), plus pytest for step 1. Each step
# is bounded by `timeout` so that the whole run ends within about 9 minutes.
set -uo pipefail
out=${1:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name())' \
    || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
status=0
timeout 180 python3 -m pytest -q -p no:cacheprovider test/unit/test_export_onnx.py -k cuda -rs || status=1
for precision in fp32 fp16; do
    timeout 180 python3 bench/latency.py --variant tiny --variant focalt --sizes 640x480,1280x720 \
        --backends tensorrt,onnxruntime-cuda,torch-cuda --precision "$precision" --repeat 20 --warmup 3 --json "$out/latency_gpu_$precision.json" || status=1
done
exit $status

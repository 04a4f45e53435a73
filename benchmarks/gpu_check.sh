#!/usr/bin/env bash
# The prepared GPU check for a lent H100/H200 (the `device` tool), in one call of about 9.5 minutes:
# GPU-only tests, the extraction-speed benchmark for the 256 model at block 24 (reference style,
# diffprobe eager and compiled, end to end), a profile of that compiled forward by kernel group
# (where the time per batch goes), timestep fusion on the small model, and the time per
# DifFeed training step for the 256 model at batch 4 and 32 (released style against diffprobe's),
# and the store writer alone (512 KB native maps, 1/2/4 writer threads, against raw writes).
# $OUT comes back with at most 8 files: gpu.txt, 6 logs and the profile's Chrome trace.
#
# Prepare once, here (the device image has torch but not zarr or dask; Python 3.12 there):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux1_x86_64 -d .whl zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 \
#     google-crc32c==1.9.0 dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 \
#     tblib==3.2.2 tornado==6.6.1 zict==3.0.0 importlib_metadata==10.2.0
# then run `bash benchmarks/gpu_check.sh` there with carry [".whl"] and timeout_s 600.
# A quick rehearsal of the same steps on a CPU (no wheels, small model):
#   NO_WHEELS=1 PY=python MODEL=adm-32-fmnist BLOCK=13 BATCH=4 IMAGES=64 bash benchmarks/gpu_check.sh
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check}
PY=${PY:-python3}
MODEL=${MODEL:-adm-256-uncond} BLOCK=${BLOCK:-24} BATCH=${BATCH:-128} IMAGES=${IMAGES:-8192}
mkdir -p "$OUT"
if [ -z "${NO_WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch, zarr, dask; print('torch', torch.__version__, 'zarr', zarr.__version__, 'dask', dask.__version__)"

echo "== GPU tests"
timeout 120 $PY -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25

echo "== $MODEL, block $BLOCK: reference vs diffprobe (eager, compiled), end to end"
timeout 330 $PY benchmarks/extract_speed.py --model "$MODEL" --block "$BLOCK" --batch "$BATCH" --iters 5 \
    --compile --channels-last --e2e --e2e-images "$IMAGES" 2>&1 | tee "$OUT/speed256.log" | grep -v Warning

# Right after the speed run, so inductor's cache already holds the same compiled graph (about 1 min).
echo "== $MODEL, block $BLOCK: profile of the compiled forward by kernel group (bf16 on the GPU)"
timeout 150 $PY benchmarks/gpu_profile.py --model "$MODEL" --block "$BLOCK" --batch "$BATCH" --iters 3 --compile \
    --trace "$OUT/profile256.json.gz" 2>&1 | tee "$OUT/profile256.log" | grep -v Warning

echo "== timestep fusion on the 32x32 model"
timeout 90 $PY benchmarks/extract_speed.py --model adm-32-fmnist --batch 64 --iters 10 \
    --fuse auto --timesteps 8 2>&1 | tee "$OUT/fuse32.log" | grep -v Warning

echo "== DifFeed training step, $MODEL, batch 4 and 32"
for B in 4 32; do
    timeout 120 $PY benchmarks/difffeed_speed.py --model "$MODEL" --batch "$B" --iters 5 2>&1 | tee -a "$OUT/difffeed.log" | grep -v Warning
done

echo "== the store writer alone: native maps, 1/2/4 threads vs raw writes (target ~400 MB/s)"
timeout 120 $PY benchmarks/writer_speed.py --threads 1,2,4 2>&1 | tee "$OUT/writer.log" | grep -v Warning

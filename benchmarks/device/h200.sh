#!/usr/bin/env bash
# One prepared run on a lent GPU machine (NVIDIA H200, 16 cores, no network): it has torch,
# numba, h5py, scipy... but not gemmi or hdf5plugin, carried as wheels in .whl/ (see
# BENCHMARKS.md, "GPU machine"). Every stage has its own time limit and writes under $OUT, so a
# stage that fails or runs long still leaves the others' results.
#
#   carry: .whl      command: bash benchmarks/device/h200.sh
#
# The wheels, fetched once on the development machine (git-ignored through .git/info/exclude):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     -d .whl gemmi==0.7.5 hdf5plugin==7.1.0
#
# Stages:
#   1. train the screening model on the GPU (scripts/train_default_model.py --device cuda),
#      simulating and reducing its frames with 16 processes;
#   2. xtalscreen screen throughput with inference on the GPU (benchmarks/bench_screen.py
#      --device cuda), 2, 8 and 15 reading/preprocessing workers, then 15 workers with CPU
#      inference. Runs of under ~3000 frames are dominated by the GPU workers' start-up
#      (spawn + CUDA context): BENCHMARKS.md quotes 2880-frame runs (--repeat 12).
set -u
OUT=${OUT:-/tmp/xtalscreen_device_out}
mkdir -p "$OUT"
FRAMES=${FRAMES:-6000}
MODEL=${MODEL:-spotcount}
DEVICE=${DEVICE:-cuda}
SF=${SCREEN_FRAMES:-480}
SIMW=${SIMW:-16}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; free -g | head -2;
  python3 -c "import torch, numba, h5py; print('torch', torch.__version__, torch.cuda.get_device_name(), 'numba', numba.__version__, 'h5py', h5py.__version__)"; } 2>&1 | tee "$OUT/machine.txt"
T0=$(date +%s)
timeout ${TRAIN_LIMIT:-290} python3 scripts/train_default_model.py --work /tmp/w --frames "$FRAMES" \
  --sim-workers $SIMW --device $DEVICE --loader-workers ${LOADERS:-12} --threads 4 --model "$MODEL" \
  --epochs ${EPOCHS:-45} --patience 20 --batches-per-epoch ${BPE:-80} \
  --out "$OUT/model" --report "$OUT/model/default_model.md" > "$OUT/train.log" 2>&1
echo "train rc=$? in $(( $(date +%s) - T0 )) s" | tee -a "$OUT/train.log"
tail -5 "$OUT/train.log"
M=default
[ -f "$OUT/model/default_ke.pt" ] && M="$OUT/model/default_ke.pt"
T1=$(date +%s)
timeout ${SCREEN_LIMIT:-150} python3 benchmarks/bench_screen.py --frames $SF --sim-workers $SIMW --repeat 4 \
  --workers ${GPU_WORKERS:-2,8,15} --device $DEVICE --no-baseline --model "$M" --work /tmp/bs > "$OUT/screen_gpu.md" 2> "$OUT/screen_gpu.err"
echo "screen rc=$? in $(( $(date +%s) - T1 )) s" | tee -a "$OUT/screen_gpu.md"
cat "$OUT/screen_gpu.md"; tail -3 "$OUT/screen_gpu.err"
T2=$(date +%s)
timeout ${CPU_LIMIT:-70} python3 benchmarks/bench_screen.py --frames $SF --repeat 2 --workers ${CPU_WORKERS:-15} \
  --device cpu --no-baseline --model "$M" --work /tmp/bs > "$OUT/screen_cpu.md" 2> "$OUT/screen_cpu.err"
echo "screen (cpu inference) rc=$? in $(( $(date +%s) - T2 )) s" | tee -a "$OUT/screen_cpu.md"
cat "$OUT/screen_cpu.md"

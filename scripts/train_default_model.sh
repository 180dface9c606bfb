#!/bin/sh
# Reproduce the shipped default hit-screening model (see scripts/train_default_model.py).
# Writes src/xtalscreen/models/weights/default_ke.pt + default_ke.json. The defaults are step 1 of
# the shipped recipe (spotcount, 6000 frames); on a GPU machine add --device cuda --loader-workers N
# --sim-workers N (benchmarks/device/h200.sh: ~4.5 min on an H200 with 16 cores). Step 2, the
# fine-tuning, and step 3, the fine-tuning on measured-SNR labels, are in the docstring of
# scripts/train_default_model.py.
set -e
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/train_default_model.py "$@"

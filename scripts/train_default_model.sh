#!/bin/sh
# Reproduce the shipped default hit-screening model (see scripts/train_default_model.py).
# Writes src/xtalscreen/models/weights/default_ke.pt + default_ke.json; ~20-25 min on 2 cores.
set -e
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/train_default_model.py "$@"

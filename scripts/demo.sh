#!/usr/bin/env bash
# The project's main job on the bundled default: scikit-learn's digits (1,797 8x8 images) with 50% symmetric label
# noise, a small CNN on the CPU, three methods x three seeds, then a table of test accuracy and selection quality.
#   standard      cross-entropy on all noisy labels (memorises the noise: accuracy falls late in training)
#   fine          FINE: after warm-up, train only on the samples whose features align with their class eigenvector
#   f-coteaching  two networks, each trained on FINE's selection from the other's features
# About 3-4 minutes on a 2-core CPU. Runs go to runs/demo/ (tensorboard --logdir runs/demo); rerunning skips
# finished runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUTPUT=${OUTPUT:-runs/demo}  # where the runs and the report (report.md, report.csv) go
SEEDS=${SEEDS:-"1 2 3"}      # one run per seed and method
JOBS=${JOBS:-2}              # runs in parallel, one CPU thread each
# interpreter: $PYTHON if set, else the README's .venv, else python on PATH
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
export PYTHON OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=""

bash scripts/grid.sh --trainer dynamic_selection --settings scripts/grids/demo_digits.txt --seeds "$SEEDS" \
  --output "$OUTPUT" --data_path data --jobs "$JOBS" --extra "--device cpu"
"$PYTHON" -m engine.report "$OUTPUT"

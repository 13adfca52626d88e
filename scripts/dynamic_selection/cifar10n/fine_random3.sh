#!/usr/bin/env bash
# FINE sample selection on CIFAR-10N human labels ('random3' label set), recipe of the synthetic-noise runs.
# Usage (from anywhere): CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10n/fine_random3.sh [extra flags]
# Needs data/cifar-n/ from: bash scripts/download_cifar_n.sh data (CC BY-NC 4.0, not shipped).
# Defaults follow the paper's published recipe; edit the variables below. Extra flags are passed to the trainer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH=${DATA_PATH:-data}  # CIFAR python-pickle folders (bash scripts/download_cifar.sh data)
OUTPUT=${OUTPUT:-runs}        # root of the run directories (tensorboard --logdir runs)
SEEDS=${SEEDS:-"1 2 3"}       # one run per seed; each seed also draws its own noisy labels
NOISE_KIND=human              # CIFAR-N human annotations
NOISE_LABEL=random3           # CIFAR-N label set: aggre | random1 | random2 | random3 | worst
ARCH=resnet34                 # ResNet-34 with a CIFAR stem (3x3 conv, no max-pool)
EPOCHS=120                    # training epochs
BATCH_SIZE=128                # mini-batch size
LR=0.02                       # initial learning rate (SGD, momentum 0.9)
LR_SCHEDULE=multistep         # multistep | cosine
MILESTONES="40 80"            # epochs at which the lr is multiplied by GAMMA
GAMMA=0.01                    # lr factor at each milestone
WEIGHT_DECAY=0.001            # weight decay
VAL_SIZE=5000                 # class-balanced noisy validation split; the best epoch is chosen on it
WARMUP=40                     # epochs on all data before the first selection round
EVERY=10                      # epochs between selection rounds
THRESHOLD=0.5                 # zeta: clean if the posterior of the high-alignment component exceeds it
# interpreter: $PYTHON if set, else the README's .venv, else python on PATH
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

for SEED in $SEEDS; do
  "$PYTHON" -m dynamic_selection.train --dataset cifar10 --data_path "$DATA_PATH" --output "$OUTPUT" \
    --method fine --loss ce --seed "$SEED" \
    --noise_kind "$NOISE_KIND" --noise_label "$NOISE_LABEL" --arch "$ARCH" --epochs "$EPOCHS" \
    --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule "$LR_SCHEDULE" --milestones $MILESTONES \
    --gamma "$GAMMA" --weight_decay "$WEIGHT_DECAY" --val_size "$VAL_SIZE" --warmup "$WARMUP" \
    --every "$EVERY" --threshold "$THRESHOLD" \
    "$@"
done

#!/usr/bin/env bash
# FINE sample selection on Clothing1M (real label noise), ImageNet-pretrained ResNet-50.
# Usage (from anywhere): CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/clothing1m/fine.sh [extra flags]
# Defaults follow the paper's published recipe; edit the variables below. Extra flags are passed to the trainer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH=${DATA_PATH:-data/clothing1m}  # images/ + annotation files (request Clothing1M from Xiao et al. 2015)
OUTPUT=${OUTPUT:-runs}        # root of the run directories (tensorboard --logdir runs)
SEEDS=${SEEDS:-"1 2 3"}       # one run per seed
ARCH=resnet50                 # torchvision ResNet-50
PRETRAINED=imagenet           # torchvision IMAGENET1K_V1 weights from the local torch hub cache (or a file path)
EPOCHS=10                     # training epochs
NUM_BATCHES=2000              # each selection round scores a fresh class-balanced draw of NUM_BATCHES x BATCH_SIZE
                              # images (not the whole million) and the next epoch trains once on those it selects;
                              # the warm-up epoch trains on such a draw
BATCH_SIZE=64                 # mini-batch size
LR=0.002                      # learning rate (SGD, momentum 0.9), constant
MILESTONES=""                 # no lr steps
WEIGHT_DECAY=0.001            # weight decay
VAL_SIZE=0                    # Clothing1M ships a clean validation set; the best epoch is chosen on it
WARMUP=1                      # one epoch on all data, then a selection round before every epoch
EVERY=1                       # epochs between selection rounds
THRESHOLD=0.5                 # zeta: clean if the posterior of the high-alignment component exceeds it
# interpreter: $PYTHON if set, else the README's .venv, else python on PATH
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

for SEED in $SEEDS; do
  "$PYTHON" -m dynamic_selection.train --dataset clothing1m --data_path "$DATA_PATH" --output "$OUTPUT" \
    --method fine --loss ce --seed "$SEED" --arch "$ARCH" --pretrained "$PRETRAINED" --epochs "$EPOCHS" \
    --num_batches "$NUM_BATCHES" --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule multistep \
    --milestones $MILESTONES --weight_decay "$WEIGHT_DECAY" --val_size "$VAL_SIZE" --warmup "$WARMUP" \
    --every "$EVERY" --threshold "$THRESHOLD" \
    "$@"
done

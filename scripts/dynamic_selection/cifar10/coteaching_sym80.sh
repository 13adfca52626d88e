#!/usr/bin/env bash
# Co-teaching baseline (small-loss exchange between two networks) on CIFAR-10 with 80% symmetric label noise.
# Usage (from anywhere): CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10/coteaching_sym80.sh [extra flags]
# Defaults follow the paper's published recipe; edit the variables below. Extra flags are passed to the trainer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH=${DATA_PATH:-data}  # CIFAR python-pickle folders (bash scripts/download_cifar.sh data)
OUTPUT=${OUTPUT:-runs}        # root of the run directories (tensorboard --logdir runs)
SEEDS=${SEEDS:-"1 2 3"}       # one run per seed; each seed also draws its own noisy labels
NOISE_KIND=sym                # sym (uniform over all classes) | asym (class map) | pairflip | instance
NOISE_RATE=0.8                # fraction of training labels that are resampled or flipped
ARCH=resnet34                 # ResNet-34 with a CIFAR stem (3x3 conv, no max-pool)
EPOCHS=120                    # training epochs
BATCH_SIZE=128                # mini-batch size
LR=0.01                       # initial learning rate (SGD, momentum 0.9)
LR_SCHEDULE=multistep         # multistep | cosine
MILESTONES="40 80"            # epochs at which the lr is multiplied by GAMMA
GAMMA=0.01                    # lr factor at each milestone
WEIGHT_DECAY=0.0001           # weight decay
VAL_SIZE=5000                 # class-balanced noisy validation split; the best epoch is chosen on it
NUM_GRADUAL=40                # epochs over which the forget rate ramps up to tau (tau defaults to the realised noise rate; add --forget_rate to set it)
# interpreter: $PYTHON if set, else the README's .venv, else python on PATH
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

for SEED in $SEEDS; do
  "$PYTHON" -m dynamic_selection.train --dataset cifar10 --data_path "$DATA_PATH" --output "$OUTPUT" \
    --method coteaching --loss ce --seed "$SEED" \
    --noise_kind "$NOISE_KIND" --noise_rate "$NOISE_RATE" --arch "$ARCH" --epochs "$EPOCHS" \
    --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule "$LR_SCHEDULE" --milestones $MILESTONES \
    --gamma "$GAMMA" --weight_decay "$WEIGHT_DECAY" --val_size "$VAL_SIZE" --num_gradual "$NUM_GRADUAL" \
    "$@"
done

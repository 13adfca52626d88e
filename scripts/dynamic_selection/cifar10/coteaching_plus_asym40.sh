#!/usr/bin/env bash
# Co-teaching+ baseline (small-loss exchange on disagreements) on CIFAR-10 with 40% asymmetric label noise.
# Usage (from anywhere): CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/cifar10/coteaching_plus_asym40.sh [extra flags]
# Defaults follow the paper's published recipe; edit the variables below. Extra flags are passed to the trainer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH=${DATA_PATH:-data}  # CIFAR python-pickle folders (bash scripts/download_cifar.sh data)
OUTPUT=${OUTPUT:-runs}        # root of the run directories (tensorboard --logdir runs)
SEEDS=${SEEDS:-"1 2 3"}       # one run per seed; each seed also draws its own noisy labels
NOISE_KIND=asym               # sym (uniform over all classes) | asym (class map) | pairflip | instance
NOISE_RATE=0.4                # fraction of training labels that are resampled or flipped
ARCH=resnet34                 # ResNet-34 with a CIFAR stem (3x3 conv, no max-pool)
EPOCHS=200                    # training epochs
BATCH_SIZE=128                # mini-batch size
OPTIMIZER=adam                # Adam, as the Co-teaching+ paper
LR=0.001                      # initial learning rate
LR_SCHEDULE=linear-decay      # linear decay to 0 from DECAY_START; Adam beta1 0.9 -> 0.1 there
DECAY_START=80                # epoch where the linear decay starts
INIT_STEPS=5000               # steps of plain co-teaching before disagreement is used
WEIGHT_DECAY=0.0              # weight decay
VAL_SIZE=5000                 # class-balanced noisy validation split; the best epoch is chosen on it
NUM_GRADUAL=10                # epochs over which the forget rate ramps up to tau (tau defaults to the realised noise rate; add --forget_rate to set it)
# interpreter: $PYTHON if set, else the README's .venv, else python on PATH
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

for SEED in $SEEDS; do
  "$PYTHON" -m dynamic_selection.train --dataset cifar10 --data_path "$DATA_PATH" --output "$OUTPUT" \
    --method coteaching+ --loss ce --seed "$SEED" \
    --noise_kind "$NOISE_KIND" --noise_rate "$NOISE_RATE" --arch "$ARCH" --epochs "$EPOCHS" \
    --batch_size "$BATCH_SIZE" --optimizer "$OPTIMIZER" --lr "$LR" --lr_schedule "$LR_SCHEDULE" \
    --decay_start "$DECAY_START" --init_steps "$INIT_STEPS" --weight_decay "$WEIGHT_DECAY" --val_size "$VAL_SIZE" \
    --num_gradual "$NUM_GRADUAL" \
    "$@"
done

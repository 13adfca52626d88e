#!/usr/bin/env bash
# FINE sample selection on mini-WebVision (first 50 classes of WebVision 1.0, Google images), InceptionResNetV2 from
# scratch; tested on the WebVision validation set and the ILSVRC12 validation images of the same classes.
# Usage (from anywhere): CUDA_VISIBLE_DEVICES=0 bash scripts/dynamic_selection/webvision/fine.sh [extra flags]
# No FINE-only WebVision recipe was published; the schedule is the (F-)DivideMix WebVision one. Extra flags are passed
# to the trainer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH=${DATA_PATH:-data/webvision}        # WebVision 1.0: info/, google/, val_images_256/
IMAGENET_PATH=${IMAGENET_PATH:-data/imagenet}  # ILSVRC12 validation images in val/<wnid>/ folders
OUTPUT=${OUTPUT:-runs}        # root of the run directories (tensorboard --logdir runs)
SEEDS=${SEEDS:-"1 2 3"}       # one run per seed
ARCH=inception_resnet_v2      # InceptionResNetV2 for 299x299 inputs, randomly initialised
EPOCHS=80                     # training epochs (each a full pass over the ~66k training images)
BATCH_SIZE=32                 # mini-batch size
LR=0.01                       # initial learning rate (SGD, momentum 0.9)
MILESTONES=40                 # epoch at which the lr is multiplied by GAMMA
GAMMA=0.1                     # lr factor at the milestone
WEIGHT_DECAY=5e-4             # weight decay
VAL_SIZE=0                    # no split of the noisy training set; test sets are the two validation sets
WARMUP=1                      # one epoch on all data before the first selection round
EVERY=1                       # epochs between selection rounds
THRESHOLD=0.5                 # zeta: clean if the posterior of the high-alignment component exceeds it
# interpreter: $PYTHON if set, else the README's .venv, else python on PATH
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

for SEED in $SEEDS; do
  "$PYTHON" -m dynamic_selection.train --dataset webvision --data_path "$DATA_PATH" \
    --imagenet_path "$IMAGENET_PATH" --output "$OUTPUT" --method fine --loss ce --seed "$SEED" --arch "$ARCH" \
    --epochs "$EPOCHS" --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule multistep --milestones $MILESTONES \
    --gamma "$GAMMA" --weight_decay "$WEIGHT_DECAY" --val_size "$VAL_SIZE" --warmup "$WARMUP" --every "$EVERY" \
    --threshold "$THRESHOLD" \
    "$@"
done

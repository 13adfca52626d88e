#!/usr/bin/env bash
# F-DivideMix (DivideMix with FINE's split) on mini-WebVision (first 50 classes of WebVision 1.0, Google images), two InceptionResNetV2s from
# scratch; tested on the WebVision validation set and the ILSVRC12 validation images of the same classes.
# One run per seed in SEEDS, on the GPU in CUDA_VISIBLE_DEVICES. Extra arguments go to the trainer: --resume
# continues killed runs and skips finished ones, --workers 8 ... Results: python -m fine.report OUTPUT
#   CUDA_VISIBLE_DEVICES=0 bash scripts/dividemix/webvision/f_dividemix.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

DATA_PATH="${DATA_PATH:-data/webvision}"        # WebVision 1.0: info/, google/, val_images_256/
IMAGENET_PATH="${IMAGENET_PATH:-data/imagenet}"  # ILSVRC12 validation images in val/<wnid>/ folders
OUTPUT="${OUTPUT:-runs}"        # root of the run directories
SEEDS="${SEEDS:-1 2 3}"         # one run per seed
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"

SELECTOR=fine                 # FINE on eval-mode penultimate features of un-augmented images
P_THRESHOLD=0.5        # a sample is labelled when its clean probability exceeds this
LAMBDA_U=0             # no unlabelled loss on WebVision
T=0.5                  # sharpening temperature of refined and guessed labels
ALPHA=0.5              # mixup Beta(ALPHA, ALPHA)
WARMUP=1               # epochs of cross-entropy on all data before the first split
ARCH=inception_resnet_v2  # network (two copies), 299x299 inputs
EPOCHS=80
BATCH_SIZE=32          # labelled and unlabelled samples per iteration (warm-up: twice this)
LR=0.01                # SGD, momentum 0.9
MILESTONES=40          # epoch at which the lr is multiplied by GAMMA
GAMMA=0.1
WEIGHT_DECAY=5e-4

for SEED in $SEEDS; do
  "$PYTHON" -m dividemix.train --dataset webvision --data_path "$DATA_PATH" --imagenet_path "$IMAGENET_PATH" \
    --output "$OUTPUT" --seed "$SEED" --selector "$SELECTOR" --p_threshold "$P_THRESHOLD" \
    --lambda_u "$LAMBDA_U" --T "$T" --alpha "$ALPHA" --warmup "$WARMUP" --arch "$ARCH" --epochs "$EPOCHS" \
    --batch_size "$BATCH_SIZE" --lr "$LR" --lr_schedule multistep --milestones "$MILESTONES" --gamma "$GAMMA" \
    --weight_decay "$WEIGHT_DECAY" --val_size 0 "$@"
done
